"""A step after the backward pass: the engine's, or torch.optim's own.

The engine's (StackedUpdate) serves K >= 1 members at once, a run alone being a stack of one
(stack_of_one): clipping, each member's gradient norm, one StackedOptimizer step (optimizers.py), the
max-norm constraint. torch.optim's own (torch_update: the optimizer's `step()`, clip_grad_*_, renorm) is a
named mode of its own, taken where the engine has no stacked form for a run: an optimizer class or switch
it does not know (`+optimizer.foreach=true`, LBFGS, ...), several parameter groups (transfer's rates),
fp16 (the gradient scaler steps the optimizer). setup.update_mode says which, and why; the run's start
banner and summary.json say it too.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim import Optimizer

from nnlab.engine.optimizers import StackedOptimizer, per_member, stacked_form


def update_mode(optimizer: Optimizer, precision: str) -> str | None:
    """Why a run steps with torch.optim's own step() rather than the engine's (None: the engine's)."""
    if precision == "fp16":
        return "fp16: the gradient scaler steps torch's optimizer"
    return stacked_form([optimizer])


class StackedUpdate:
    """The step after the backward pass, for the K members of a stack at once (a run alone is a stack of
    one): clip each gradient element (clip_grad_value), measure each member's global gradient norm and clip
    to it (clip_grad_norm), one StackedOptimizer step, then the max-norm constraint. Every per-member setting
    is a [K] tensor (inf where a member has none), so nothing here loops over members. Returns the members'
    gradient norms before clipping, [K], on the device.

    `params`: the stacked tensors [K, ...]; `member_params[k]`: member k's parameter objects (its optimizer's),
    views of the stacks; `grads()`: the stacked gradients, aligned with `params` (None for one without);
    `weights`: the indices in `params` of the weight matrices and filters that max-norm constrains."""

    def __init__(
        self,
        optimizers: list[Optimizer],
        params: list[torch.Tensor],
        member_params: list[list[torch.Tensor]],
        weights: list[int],
        regularization: list,
        grads,
    ):
        self.optimizer = StackedOptimizer(optimizers, params, member_params)
        self.params, self.weights, self.grads = params, weights, grads
        device = params[0].device

        def per_member(key: str) -> torch.Tensor | None:
            values = [getattr(r, key) for r in regularization]
            if all(v is None for v in values):
                return None
            return torch.tensor([math.inf if v is None else float(v) for v in values], device=device)

        self.clip_value, self.clip_norm, self.max_norm = (
            per_member("clip_grad_value"),
            per_member("clip_grad_norm"),
            per_member("max_norm"),
        )

    @torch.no_grad()
    def __call__(self, active: torch.Tensor | None = None) -> torch.Tensor:
        grads = self.grads()
        present = [g for g in grads if g is not None]
        K = self.params[0].shape[0]
        if self.clip_value is not None:
            for g in present:
                torch.clamp(g, -per_member(self.clip_value, g), per_member(self.clip_value, g), out=g)
        if present:
            # each member's global norm: its tensors' norms (as torch's clip_grad_norm_ takes them), then their
            # norm; a tensor's [K] norms in one reduction over its rows: equal to each slice's own norm (what
            # _foreach_norm of the K x tensors slices gave, ~15x slower: tests/test_stacked_optim.py)
            norms = torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), dim=1) for g in present])
            total = norms[0] * norms[0]
            for row in norms[1:]:  # in order, tensor by tensor: the same sum whatever K is
                total = total + row * row
            norm = total.sqrt()
        else:
            norm = torch.zeros(K, device=self.params[0].device)
        if self.clip_norm is not None:
            coef = torch.clamp(self.clip_norm / (norm + 1e-6), max=1.0)
            for g in present:
                g.mul_(per_member(coef, g))
        self.optimizer.step(grads, active)
        if self.max_norm is not None:  # each unit's incoming weights (a row; a filter) back inside the ball
            for i in self.weights:
                w = self.params[i]
                rows = torch.linalg.vector_norm(w.flatten(2), dim=2).reshape(*w.shape[:2], *([1] * (w.dim() - 2)))
                limit = per_member(self.max_norm, rows)
                w.mul_(torch.where(rows > limit, limit / (rows + 1e-7), torch.ones_like(rows)))
        return norm


def stack_of_one(optimizer: Optimizer, weights: list[torch.Tensor], regularization) -> StackedUpdate | None:
    """A run alone as a stack of one: its step after the backward pass as a StackedUpdate over [1, ...]
    views of its parameters, so that it computes exactly what member k of any stack computes. None where
    the optimizer has no stacked form (or several parameter groups: transfer's fine-tuning rates)."""
    if stacked_form([optimizer]) is not None:
        return None
    group = optimizer.param_groups[0]["params"]
    ids = {id(w) for w in weights}
    return StackedUpdate(
        [optimizer],
        [p.detach().unsqueeze(0) for p in group],
        [group],
        [i for i, p in enumerate(group) if id(p) in ids],
        [regularization],
        grads=lambda: [None if p.grad is None else p.grad.unsqueeze(0) for p in group],
    )


def member_update(exp, scaler) -> torch.Tensor:
    """A member's step after the backward pass: clip, measure, step, constrain. Returns its global
    gradient norm (before clipping), on the device: exp.step where the engine has a stacked form for it
    (the arithmetic of every member of a stack), else torch.optim's own (torch_update). A pruned run's zeros
    stay zero (exp.masks)."""
    norm = exp.step()[0] if exp.step is not None else torch_update(exp, scaler)
    if exp.masks:
        with torch.no_grad():
            for w, mask in exp.masks:
                w.mul_(mask)
    return norm


def torch_update(exp, scaler) -> torch.Tensor:
    """torch.optim's own step for a run (fp16's gradient scaling included): unscale, clip, measure, step(),
    constrain; its global gradient norm before clipping."""
    reg = exp.regularization
    scaler.unscale_(exp.optimizer)  # clip and measure true gradients, not scaled ones
    if reg.clip_grad_value is not None:
        nn.utils.clip_grad_value_(exp.params, reg.clip_grad_value)
    if reg.clip_grad_norm is not None:
        norm = nn.utils.clip_grad_norm_(exp.params, reg.clip_grad_norm)  # returns the norm before clipping
    else:
        norm = global_grad_norm(exp.params)
    scaler.step(exp.optimizer)
    scaler.update()
    if reg.max_norm is not None:  # each unit's incoming weight vector (a row; a filter) back inside the ball
        with torch.no_grad():
            for w in exp.weights:
                w.copy_(torch.renorm(w, 2, 0, reg.max_norm))
    return norm


def global_grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients together, left on the device (clip_grad_norm_ without the clipping)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())
