"""What the training loop (train.py) drives: K >= 1 members' models as one.

A `Stack` holds the MLPs of K members: each Linear layer's weights and biases live in [K, out, in] and
[K, out] tensors, the members' own parameters are views of their slices (so their optimizers, checkpoints
and diagnostics read and write the stack), one torch.baddbmm per layer runs every member's forward pass and
one optimizer step (update.StackedUpdate) updates them all. A `Solo` is a stack of one for any model (a
run alone, a conv net): its own module, its own step. Both answer the same calls: zero_grad(),
forward(xs, active), penalty(k), activity(k), backward(objective), step(active) -> gradient norms [K].
"""

from __future__ import annotations

import torch
from torch import nn

from nnlab.engine.optimizers import stacked_form
from nnlab.engine.update import StackedUpdate, member_update, stack_of_one
from nnlab.nn.activations import Maxout
from nnlab.nn.dropout import Dropout, mask, noise


class Solo:
    """One member, any model: its module's forward, its optimizer's step (a stack of one where the
    engine has a stacked form for it: update.StackedUpdate; else torch.optim's own, update.torch_update)."""

    def __init__(self, exp, scaler):
        self.exp, self.scaler = exp, scaler

    def zero_grad(self) -> None:
        self.exp.optimizer.zero_grad(set_to_none=True)

    def forward(self, xs: list, active: list[bool]) -> torch.Tensor:
        self.exp.activities.clear()
        return self.exp.model(xs[0]).unsqueeze(0)

    def penalty(self, k: int) -> torch.Tensor:
        """The L1 penalty's sum |w| over the member's weights."""
        return sum(w.abs().sum() for w in self.exp.weights)

    def activity(self, k: int) -> torch.Tensor:
        """The activity L1 penalty's sum |a| over the member's hidden activations (forward hooks: setup)."""
        return sum(a.abs().sum() for a in self.exp.activities)

    def backward(self, objective: torch.Tensor) -> None:
        self.scaler.scale(objective).backward()

    def step(self, active: list[bool]) -> torch.Tensor:
        """The run's update: its gradient norm before clipping, [1]."""
        return member_update(self.exp, self.scaler).reshape(1)

    def share_grads(self) -> None:
        """(A run's parameters hold their own gradients.)"""


class Stack:
    """The members' MLPs as one (see the module's text). `why` is None where they stack, else why not
    (then the loop trains them one after another, each a Solo). Stacked per member: Linear weights and
    biases, batch norm's affine parameters and running statistics, PReLU's slopes; maxout and the other
    activations are applied to the stack as they are."""

    def __init__(self, exps: list, scalers: list):
        layers = [_layers(e.model) for e in exps]
        signature = {  # (a member without dropout lines up with one with: its dropout is None, applied as none)
            None if ls is None else tuple((kind, None if kind == "dropout" else _shape(mod)) for kind, mod in ls)
            for ls in layers
        }
        self.why = (
            None
            if len(signature) == 1 and None not in signature
            else "a layer the stack does not batch, or layers that differ in kind or shape"
        )
        self.exps, self.scalers, self.fused, self.unfused = exps, scalers, None, None
        if self.why:
            return
        self.kinds, self.layers = [kind for kind, _ in layers[0]], layers
        self.params: list[nn.Parameter] = []  # the stacked parameters, [K, ...] each
        self.members: list[list] = [[] for _ in exps]  # members[k][i]: member k's parameter object for params[i]
        self.stacked: dict[int, dict] = {}  # layer index -> its stacked tensors, by name
        self.linear_weights: list[int] = []  # indices in params of the Linear weights (L1 penalty, max-norm)
        for j, kind in enumerate(self.kinds):
            mods = [ls[j][1] for ls in layers]
            names = {"linear": ("weight", "bias"), "batchnorm": ("weight", "bias"), "prelu": ("weight",)}.get(kind, ())
            if kind == "linear":
                self.linear_weights.append(len(self.params))
            for name in names:
                self.stacked.setdefault(j, {})[name] = self._stack_parameter(mods, name)
            if kind == "batchnorm":  # running statistics: the members' buffers become views of [K, C] ones
                for name in ("running_mean", "running_var", "num_batches_tracked"):
                    stacked = torch.stack([getattr(m, name) for m in mods])
                    for k, m in enumerate(mods):
                        setattr(m, name, stacked[k])
                    self.stacked[j][name] = stacked
        self.weights = [self.params[i] for i in self.linear_weights]
        for e in exps:  # a member's own step follows its parameters into the stack
            e.step = None if e.step is None else stack_of_one(e.optimizer, e.weights, e.regularization)
        self.activities: list[torch.Tensor] = []  # hidden activations [K, B, ...] of the last forward (activity L1)
        self.inputs_of_activities: list[torch.Tensor] = []  # what went into them, with capture (their slopes)
        self._restore: list[tuple] = []  # stopped members' batch-norm statistics to put back after the backward pass
        self.keep_activities = any(e.regularization.activity_l1 > 0 for e in exps)
        self._fuse()

    def _stack_parameter(self, mods: list, name: str) -> nn.Parameter:
        """The members' parameters `name` as one [K, ...] parameter; theirs become views of its slices
        (the parameter objects stay: their optimizers hold them)."""
        stacked = nn.Parameter(torch.stack([getattr(m, name).detach() for m in mods]))
        for k, m in enumerate(mods):
            getattr(m, name).data = stacked.data[k]
            self.members[k].append(getattr(m, name))
        self.params.append(stacked)
        return stacked

    def _fuse(self) -> None:
        """One optimizer step for the whole stack (self.fused: update.StackedUpdate over the stacked
        parameters, the members' settings as [K] tensors), where the members' optimizers have a stacked
        form and each trains exactly its own stacked parameters; else self.unfused says why not."""
        optimizers = [e.optimizer for e in self.exps]
        self.unfused = stacked_form(optimizers)
        if self.unfused is None and any(
            {id(p) for p in o.param_groups[0]["params"]} != {id(p) for p in ps}
            for o, ps in zip(optimizers, self.members)
        ):
            self.unfused = "an optimizer that trains other parameters than the stacked layers"
        if self.unfused is not None:
            return
        params = self.params
        self.fused = StackedUpdate(
            optimizers,
            params,
            self.members,
            self.linear_weights,
            [e.regularization for e in self.exps],
            grads=lambda: [p.grad for p in params],
        )

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def forward(self, xs: list, active: list[bool], capture: bool = False) -> torch.Tensor:
        """xs[k]: member k's batch (None for a member that does not step) -> [K, B, outputs]. Dropout per
        member, with its own probability and from its own generator, as its run alone draws it. The hidden
        activations [K, B, F] stay in self.activities for activity L1 while training, and with `capture`
        (their inputs too, in self.inputs_of_activities)."""
        like = next(x for x in xs if x is not None)
        x = torch.stack([x if x is not None else torch.zeros_like(like) for x in xs])
        h = x.reshape(x.shape[0], x.shape[1], -1)
        self.activities, self.inputs_of_activities, self._restore = [], [], []
        for j, kind in enumerate(self.kinds):
            s, first = self.stacked.get(j), self.layers[0][j][1]
            if capture and kind in ("activation", "prelu"):
                self.inputs_of_activities.append(h)
            if kind == "linear":
                h = torch.baddbmm(s["bias"].unsqueeze(1), h, s["weight"].transpose(1, 2))
            elif kind == "batchnorm":
                h = self._batch_norm(h, s, first, active)
            elif kind == "prelu":
                h = torch.where(h > 0, h, s["weight"].unsqueeze(1) * h)
            elif kind == "activation":
                h = _apply(first, h)
            elif kind == "dropout":
                h = self._dropout(h, [ls[j][1] for ls in self.layers], active)
            if kind in ("activation", "prelu") and (capture or (self.keep_activities and first.training)):
                self.activities.append(h)
        return h

    def _batch_norm(self, h: torch.Tensor, s: dict, bn: nn.BatchNorm1d, active: list[bool]) -> torch.Tensor:
        """Batch norm of every member at once: [K, B, C] as [B, K * C] channels, each member's channel
        normalized over its own batch with its own statistics; a stopped member's statistics are put back
        after the backward pass (autograd holds them until then)."""
        K, B, C = h.shape
        x = h.transpose(0, 1).reshape(B, K * C)
        if bn.training and not all(active):
            off = ~torch.tensor(active, device=h.device)
            self._restore.append((s, off, s["running_mean"][off].clone(), s["running_var"][off].clone()))
        out = nn.functional.batch_norm(
            x,
            s["running_mean"].view(-1),
            s["running_var"].view(-1),
            s["weight"].view(-1),
            s["bias"].view(-1),
            bn.training,
            bn.momentum,
            bn.eps,
        )
        if bn.training:
            with torch.no_grad():
                s["num_batches_tracked"] += torch.tensor(active, device=h.device).long()
        return out.reshape(B, K, C).transpose(0, 1).contiguous()

    @staticmethod
    def _dropout(h: torch.Tensor, drops: list[Dropout | None], active: list[bool]) -> torch.Tensor:
        """Each member's dropout mask and then its hidden noise, drawn from its own generator in that order,
        as its Dropout alone draws them."""
        on = [d is not None and d.training and (d.p > 0 or d.noise > 0) and a for d, a in zip(drops, active)]
        if not any(on):
            return h
        drawn = []
        for k, (d, o) in enumerate(zip(drops, on)):
            scale, shift = mask(h[k], d.p, d.generator, d.alpha) if o and d.p > 0 else (None, None)
            drawn.append((scale, shift, noise(h[k], d.noise, d.generator) if o and d.noise > 0 else None))
        if any(s is not None for s, _, _ in drawn):
            h = h * torch.stack([s if s is not None else torch.ones_like(h[k]) for k, (s, _, _) in enumerate(drawn)])
        for i in (1, 2):  # the alpha shifts, then the noise
            if any(d[i] is not None for d in drawn):
                h = h + torch.stack([d[i] if d[i] is not None else torch.zeros_like(h[k]) for k, d in enumerate(drawn)])
        return h

    def penalty(self, k: int) -> torch.Tensor:
        return sum(w[k].abs().sum() for w in self.weights)  # on the stack's slices: its gradient reaches the stack

    def activity(self, k: int) -> torch.Tensor:
        return sum(a[k].abs().sum() for a in self.activities)

    def backward(self, objective: torch.Tensor) -> None:
        objective.backward()
        with torch.no_grad():
            for s, off, mean, var in self._restore:  # stopped members' batch-norm statistics, as they were
                s["running_mean"][off], s["running_var"][off] = mean, var
        self._restore = []
        if self.fused is None:  # the members' own optimizers step: each reads its parameters' gradients
            self.share_grads()

    def share_grads(self) -> None:
        """Each member's parameters get their slice of the stacked gradients (views): for the members' own
        optimizers (unfused), and at an epoch's end for what reads a member's gradients then (histograms).
        The fused update reads the stacked gradients, so a step does not pay K x layers assignments."""
        for i, p in enumerate(self.params):
            for k, ps in enumerate(self.members):
                ps[i].grad = None if p.grad is None else p.grad[k]

    def step(self, active: list[bool]) -> torch.Tensor:
        """One update of every member that stepped: their gradient norms before clipping, [K] (0 for a
        member that did not step; where the members' optimizers step one after another, each its own)."""
        if self.fused is not None:
            return self.fused(torch.tensor(active))
        norms = [member_update(e, s) if a else None for e, s, a in zip(self.exps, self.scalers, active)]
        like = next(n for n in norms if n is not None)
        return torch.stack([n if n is not None else torch.zeros_like(like) for n in norms])


def _apply(activation: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A parameter-free activation on [K, B, F]: maxout over the last dimension, the others as they are
    (their forward, not their call: the member's hooks are its own, not the stack's)."""
    if isinstance(activation, Maxout):
        K, B, F = h.shape
        return h.view(K, B, F // activation.pieces, activation.pieces).amax(3)
    return activation.forward(h)


def _shape(mod) -> tuple | None:
    return None if mod is None else tuple(p.shape for p in mod.parameters(recurse=False))


def _layers(model) -> list[tuple] | None:
    """An MLP as a flat list of (kind, module): linear, batchnorm, activation (or prelu), dropout (None
    where a member has no dropout, so that members with and without one line up); None for anything else
    (alpha dropout mixed with standard, batch norm without affine parameters or with momentum None)."""
    hidden, head = getattr(model, "hidden", None), getattr(model, "head", None)
    if hidden is None or not isinstance(head, nn.Linear):
        return None
    if any(getattr(model, "skips", ())):  # model.residual: not stacked (jobs.stacking keeps it alone)
        return None
    out = [("dropout", getattr(model, "input_drop", None))]  # on the inputs (model.input_dropout), or none
    for block in hidden:
        mods = list(block)
        if not mods or not isinstance(mods[0], nn.Linear):
            return None
        out.append(("linear", mods[0]))
        rest = mods[1:]
        if rest and type(rest[0]) is nn.BatchNorm1d:
            bn = rest.pop(0)
            if not bn.affine or not bn.track_running_stats or bn.momentum is None:
                return None
            out.append(("batchnorm", bn))
        if not rest:
            return None
        act = rest.pop(0)
        if type(act) is nn.PReLU:
            out.append(("prelu", act))
        elif any(True for _ in act.parameters()) or any(True for _ in act.buffers()):
            return None
        else:
            out.append(("activation", act))
        if len(rest) > 1 or (rest and type(rest[0]) is not Dropout):
            return None
        out.append(("dropout", rest[0] if rest else None))
    return [*out, ("linear", head)]
