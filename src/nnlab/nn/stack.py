"""A stack: the MLPs of a batched sweep's members as one model (launcher.py trains it). Each Linear
layer's weights and biases live in [K, out, in] and [K, out] tensors, the members' own parameters are views
of their slices, one torch.baddbmm per layer runs every member's forward pass, and fuse() gives the stack
one optimizer step (optim.StackedUpdate)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from nnlab.optim import StackedUpdate, stacked_form


class Stack:
    """The members' MLPs as one: each Linear layer's weights and biases stacked into [K, out, in] and
    [K, out] parameters, and the members' own parameters turned into views of their slices, so that
    their optimizers, checkpoints and diagnostics read and write the stack. forward() runs them all."""

    def __init__(self, models: list):
        layers = [_layers(m) for m in models]
        signature = {None if l is None else tuple((kind, None if mod is None or kind != "linear" else tuple(mod.weight.shape))
                                                  for kind, mod in l) for l in layers}  # fmt: skip
        self.problem = (None if len(signature) == 1 and None not in signature
                        else "a layer the stack does not batch, such as AlphaDropout, or layers that differ in kind or shape")
        self.step, self.unfused = None, None
        if self.problem:
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

    def fuse(self, exps: list) -> bool:
        """One optimizer step for the whole stack (self.step: optim.StackedUpdate over the stacked weights
        and biases, the members' settings as [K] tensors), where the members' optimizers have a stacked
        form and each trains exactly its own layers; else False, and self.unfused says why."""
        optimizers = [e.optimizer for e in exps]
        self.step, self.unfused = None, stacked_form(optimizers)
        members = [[t for j, kind in enumerate(self.kinds) if kind == "linear" for t in (l[j][1].weight, l[j][1].bias)]
                   for l in self.layers]  # fmt: skip
        if self.unfused is None and any({id(p) for p in o.param_groups[0]["params"]} != {id(p) for p in ps}
                                        for o, ps in zip(optimizers, members)):  # fmt: skip
            self.unfused = "an optimizer that trains other parameters than the stacked layers"
        if self.unfused is not None or any(e.trainer.precision == "fp16" for e in exps):
            return False
        params = [t for w, b in zip(self.weights, self.biases) for t in (w, b)]
        self.step = StackedUpdate(optimizers, params, members, list(range(0, len(params), 2)),
                                  [e.regularization for e in exps], grads=lambda: [p.grad for p in params])  # fmt: skip
        return True

    def zero_grad(self) -> None:
        for p in (*self.weights, *self.biases):
            p.grad = None

    def forward(self, x, members: list, active: list[bool]):
        """x: [K, B, ...] -> [K, B, outputs]. Dropout per member, with its own probability and from its
        own RNG stream (members[k].rng), drawn as torch's CPU dropout draws it (bernoulli_(1 - p), then / (1 - p))."""
        h, li = x.reshape(x.shape[0], x.shape[1], -1), 0
        for j, kind in enumerate(self.kinds):
            if kind == "linear":
                h = torch.baddbmm(self.biases[li].unsqueeze(1), h, self.weights[li].transpose(1, 2))
                li += 1
            elif kind == "activation":
                h = self.layers[0][j][1](h)
            else:  # dropout
                drops = [l[j][1] for l in self.layers]
                if not any(d is not None and d.training and d.p > 0 for d in drops):
                    continue
                masks = []
                for k, (m, d) in enumerate(zip(members, drops)):
                    if d is None or not d.training or d.p == 0 or not active[k]:
                        masks.append(torch.ones_like(h[k]))
                        continue
                    outside = torch.get_rng_state()
                    torch.set_rng_state(m.rng)
                    masks.append(torch.empty_like(h[k]).bernoulli_(1 - d.p).div_(1 - d.p))
                    m.rng = torch.get_rng_state()
                    torch.set_rng_state(outside)
                h = h * torch.stack(masks)
        return h

    def share_grads(self) -> None:
        """Each member's parameters get their slice of the stack's gradients (views: no copy)."""
        li = 0
        for j, kind in enumerate(self.kinds):
            if kind != "linear":
                continue
            w, b = self.weights[li], self.biases[li]
            for k, l in enumerate(self.layers):
                l[j][1].weight.grad = None if w.grad is None else w.grad[k]
                l[j][1].bias.grad = None if b.grad is None else b.grad[k]
            li += 1


def _layers(model) -> Optional[list[tuple]]:
    """An MLP as a flat list of (kind, module): linear, activation, dropout (None where a member has no
    dropout, so that members with and without one line up); None for anything else in it (batch norm,
    AlphaDropout: not stacked)."""
    hidden, head = getattr(model, "hidden", None), getattr(model, "head", None)
    if hidden is None or not isinstance(head, nn.Linear):
        return None
    out = []
    for block in hidden:
        mods = list(block)
        if len(mods) not in (2, 3) or not isinstance(mods[0], nn.Linear) or any(p.numel() for p in mods[1].parameters()):
            return None
        if len(mods) == 3 and type(mods[2]) is not nn.Dropout:
            return None
        out += [("linear", mods[0]), ("activation", mods[1]), ("dropout", mods[2] if len(mods) == 3 else None)]
    return [*out, ("linear", head)]
