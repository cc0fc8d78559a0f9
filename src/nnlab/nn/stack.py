"""What the training loop (train.py) drives: K >= 1 members' models as one.

A `Stack` holds the MLPs of K members: each Linear layer's weights and biases live in [K, out, in] and
[K, out] tensors, the members' own parameters are views of their slices (so their optimizers, checkpoints
and diagnostics read and write the stack), one torch.baddbmm per layer runs every member's forward pass and
one optimizer step (optim.StackedUpdate) updates them all. A `Solo` is a stack of one for any model (a
run alone, a conv net, batch norm): its own module, its own step. Both answer the same calls:
zero_grad(), forward(xs, active), penalty(k), backward(objective), step(active) -> gradient norms [K].
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from nnlab.nn.dropout import Dropout, mask
from nnlab.optim import StackedUpdate, stack_of_one, stacked_form


class Solo:
    """One member, any model: its module's forward, its optimizer's step (a stack of one where the
    optimizer has a stacked form: optim.StackedUpdate; torch's own with fp16 scaling)."""

    def __init__(self, exp, scaler):
        self.exp, self.scaler, self.why = exp, scaler, None

    def zero_grad(self) -> None:
        self.exp.optimizer.zero_grad(set_to_none=True)

    def forward(self, xs: list, active: list[bool]) -> torch.Tensor:
        self.exp.activities.clear()
        return self.exp.model(xs[0]).unsqueeze(0)

    def penalty(self, k: int) -> torch.Tensor:
        """The L1 penalty's sum |w| over the member's weights."""
        return sum(w.abs().sum() for w in self.exp.weights)

    def backward(self, objective: torch.Tensor) -> None:
        self.scaler.scale(objective).backward()

    def step(self, active: list[bool]) -> list:
        return [update(self.exp, self.scaler)]


def update(exp, scaler) -> torch.Tensor:
    """A member's step after the backward pass: clip, measure, step, constrain. Returns its global
    gradient norm (before clipping), on the device: exp.step where the optimizer has a stacked form (the
    arithmetic of every member of a stack), else torch's own (fp16 scaling, parameter groups)."""
    if exp.step is not None:
        return exp.step()[0]
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


class Stack:
    """The members' MLPs as one (see the module's text). `why` is None where they stack, else why not
    (then the loop trains them one after another, each a Solo)."""

    def __init__(self, exps: list, scalers: list):
        layers = [_layers(e.model) for e in exps]
        signature = {None if l is None else tuple((kind, None if mod is None or kind != "linear" else tuple(mod.weight.shape))
                                                  for kind, mod in l) for l in layers}  # fmt: skip
        self.why = (None if len(signature) == 1 and None not in signature
                    else "a layer the stack does not batch, or layers that differ in kind or shape")
        self.exps, self.scalers, self.fused, self.unfused = exps, scalers, None, None
        if self.why:
            return
        self.kinds = [kind for kind, _ in layers[0]]
        self.layers = layers
        self.weights, self.biases = [], []
        for j, kind in enumerate(self.kinds):
            if kind != "linear":
                continue
            w = nn.Parameter(torch.stack([l[j][1].weight.detach() for l in layers]))
            b = nn.Parameter(torch.stack([l[j][1].bias.detach() for l in layers]))
            for k, l in enumerate(layers):  # the member's parameter objects stay (its optimizer holds them)
                l[j][1].weight.data, l[j][1].bias.data = w.data[k], b.data[k]
            self.weights.append(w)
            self.biases.append(b)
        for e in exps:  # a member's own step follows its parameters into the stack
            e.step = None if e.step is None else stack_of_one(e.optimizer, e.weights, e.regularization)
        self._fuse()

    def _fuse(self) -> None:
        """One optimizer step for the whole stack (self.fused: optim.StackedUpdate over the stacked
        weights and biases, the members' settings as [K] tensors), where the members' optimizers have a
        stacked form and each trains exactly its own layers; else self.unfused says why not."""
        optimizers = [e.optimizer for e in self.exps]
        self.unfused = stacked_form(optimizers)
        members = [[t for j, kind in enumerate(self.kinds) if kind == "linear" for t in (l[j][1].weight, l[j][1].bias)]
                   for l in self.layers]  # fmt: skip
        if self.unfused is None and any({id(p) for p in o.param_groups[0]["params"]} != {id(p) for p in ps}
                                        for o, ps in zip(optimizers, members)):  # fmt: skip
            self.unfused = "an optimizer that trains other parameters than the stacked layers"
        if self.unfused is not None:
            return
        params = [t for w, b in zip(self.weights, self.biases) for t in (w, b)]
        self.fused = StackedUpdate(optimizers, params, members, list(range(0, len(params), 2)),
                                   [e.regularization for e in self.exps], grads=lambda: [p.grad for p in params])  # fmt: skip

    def zero_grad(self) -> None:
        for p in (*self.weights, *self.biases):
            p.grad = None

    def forward(self, xs: list, active: list[bool]) -> torch.Tensor:
        """xs[k]: member k's batch (None for a member that does not step) -> [K, B, outputs]. Dropout per
        member, with its own probability and from its own generator, as its run alone draws it."""
        like = next(x for x in xs if x is not None)
        x = torch.stack([x if x is not None else torch.zeros_like(like) for x in xs])
        h, li = x.reshape(x.shape[0], x.shape[1], -1), 0
        for j, kind in enumerate(self.kinds):
            if kind == "linear":
                h = torch.baddbmm(self.biases[li].unsqueeze(1), h, self.weights[li].transpose(1, 2))
                li += 1
            elif kind == "activation":
                h = self.layers[0][j][1](h)
            else:
                h = self._dropout(h, [l[j][1] for l in self.layers], active)
        return h

    @staticmethod
    def _dropout(h: torch.Tensor, drops: list[Optional[Dropout]], active: list[bool]) -> torch.Tensor:
        on = [d is not None and d.training and d.p > 0 and a for d, a in zip(drops, active)]
        if not any(on):
            return h
        masks = [mask(h[k], d.p, d.generator, d.alpha) if o else (torch.ones_like(h[k]), None)
                 for k, (d, o) in enumerate(zip(drops, on))]  # fmt: skip
        h = h * torch.stack([scale for scale, _ in masks])
        if any(shift is not None for _, shift in masks):
            h = h + torch.stack([shift if shift is not None else torch.zeros_like(h[k]) for k, (_, shift) in enumerate(masks)])
        return h

    def penalty(self, k: int) -> torch.Tensor:
        return sum(w[k].abs().sum() for w in self.weights)  # on the stack's slices: its gradient reaches the stack

    def backward(self, objective: torch.Tensor) -> None:
        objective.backward()
        li = 0  # each member's parameters get their slice of the stack's gradients (views: no copy)
        for j, kind in enumerate(self.kinds):
            if kind != "linear":
                continue
            w, b = self.weights[li], self.biases[li]
            for k, l in enumerate(self.layers):
                l[j][1].weight.grad = None if w.grad is None else w.grad[k]
                l[j][1].bias.grad = None if b.grad is None else b.grad[k]
            li += 1

    def step(self, active: list[bool]):
        """One update of every member that stepped: their gradient norms, [K] (or a list where the
        members' optimizers step one after another)."""
        if self.fused is not None:
            return self.fused(torch.tensor(active))
        return [update(e, s) if a else None for e, s, a in zip(self.exps, self.scalers, active)]


def _layers(model) -> Optional[list[tuple]]:
    """An MLP as a flat list of (kind, module): linear, activation, dropout (None where a member has no
    dropout, so that members with and without one line up); None for anything else in it (batch norm,
    an activation with parameters: not stacked)."""
    hidden, head = getattr(model, "hidden", None), getattr(model, "head", None)
    if hidden is None or not isinstance(head, nn.Linear):
        return None
    out = []
    for block in hidden:
        mods = list(block)
        if len(mods) not in (2, 3) or not isinstance(mods[0], nn.Linear) or any(p.numel() for p in mods[1].parameters()):
            return None
        if len(mods) == 3 and type(mods[2]) is not Dropout:
            return None
        out += [("linear", mods[0]), ("activation", mods[1]), ("dropout", mods[2] if len(mods) == 3 else None)]
    return [*out, ("linear", head)]
