"""Learning-rate schedules. Every factory takes the same run-time facts,
`(optimizer, total_steps, steps_per_epoch, **settings)`, and returns a torch scheduler that the
training loop steps once per optimizer step, except `plateau`, stepped once per epoch with the
validation loss. Sizes in the configs are in epochs; they are turned into steps here.

Optimizers: conf/optimizer/*.yaml name torch.optim classes directly; the one torch lacks, Yogi, is here.
Every one of them also has a stacked form (StackedOptimizer): one update over [K, ...] parameters with each
member's settings as [K] tensors, which StackedUpdate wraps with the clipping, the gradient norm and the
max-norm constraint: the step after the backward pass of a stack, and of a run alone (a stack of one).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch.optim import Optimizer, lr_scheduler


class Yogi(Optimizer):
    """Yogi (Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018, Algorithm 2):
    Adam whose second moment moves additively, by at most (1 - beta2) * g^2 per step, in the direction of g^2:

        m = beta1 * m + (1 - beta1) * g
        v = v - (1 - beta2) * sign(v - g^2) * g^2
        x = x - lr * m / (sqrt(v) + eps)

    so that v cannot collapse fast after a burst of large gradients (Adam's multiplicative v can). As in
    the paper: no bias correction, v starts at `initial_accumulator`, eps = 1e-3. `weight_decay` adds
    weight_decay * x to the gradient (L2), as in torch.optim.Adam."""

    def __init__(self, params, lr: float = 1e-2, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-3,
                 initial_accumulator: float = 1e-6, weight_decay: float = 0.0):  # fmt: skip
        if lr <= 0 or eps <= 0 or initial_accumulator < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid Yogi settings: lr={lr}, betas={betas}, eps={eps}, "
                             f"initial_accumulator={initial_accumulator}, weight_decay={weight_decay}")  # fmt: skip
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, initial_accumulator=initial_accumulator, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if group["weight_decay"] == 0 else p.grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.full_like(p, group["initial_accumulator"], memory_format=torch.preserve_format)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                g2 = g * g
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.addcmul_(torch.sign(v - g2), g2, value=-(1 - beta2))
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-group["lr"])
        return loss


def constant(optimizer: Optimizer, total_steps: int, steps_per_epoch: int):
    return lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def step(optimizer: Optimizer, total_steps: int, steps_per_epoch: int, step_epochs: int = 10, gamma: float = 0.1):
    return lr_scheduler.StepLR(optimizer, step_size=max(1, step_epochs * steps_per_epoch), gamma=gamma)


def multistep(optimizer, total_steps, steps_per_epoch, milestones: Sequence[int] = (10, 15), gamma: float = 0.1):
    return lr_scheduler.MultiStepLR(optimizer, milestones=[m * steps_per_epoch for m in milestones], gamma=gamma)


def exponential(optimizer, total_steps, steps_per_epoch, gamma: float = 0.9):
    return lr_scheduler.ExponentialLR(optimizer, gamma=gamma ** (1 / steps_per_epoch))


def cosine(optimizer, total_steps, steps_per_epoch, min_lr: float = 0.0):
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=min_lr)


def warmup_cosine(optimizer, total_steps, steps_per_epoch, warmup_epochs: float = 1, min_lr: float = 0.0):
    warmup = max(1, min(int(warmup_epochs * steps_per_epoch), total_steps - 1))
    base = optimizer.param_groups[0]["lr"]
    floor = min_lr / base if base > 0 else 0.0

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = min(1.0, (s - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return lr_scheduler.LambdaLR(optimizer, factor)


def onecycle(optimizer, total_steps, steps_per_epoch, max_lr_factor: float = 10.0, pct_start: float = 0.3):
    max_lr = [g["lr"] * max_lr_factor for g in optimizer.param_groups]
    # cycle momentum only where the optimizer has some (it would turn plain SGD into momentum SGD)
    cycle_momentum = optimizer.defaults.get("momentum", 0) > 0 or "betas" in optimizer.defaults
    return lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start, cycle_momentum=cycle_momentum
    )


def cyclic(optimizer, total_steps, steps_per_epoch, base_lr_factor=0.1, max_lr_factor=1.0, half_cycle_epochs=2):
    lrs = [g["lr"] for g in optimizer.param_groups]
    return lr_scheduler.CyclicLR(
        optimizer,
        base_lr=[lr * base_lr_factor for lr in lrs],
        max_lr=[lr * max_lr_factor for lr in lrs],
        step_size_up=max(1, int(half_cycle_epochs * steps_per_epoch)),
        mode="triangular",
        cycle_momentum=False,
    )


def plateau(optimizer, total_steps, steps_per_epoch, factor: float = 0.1, patience: int = 3, threshold: float = 1e-4):
    return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience, threshold=threshold)


def per_epoch(scheduler) -> bool:
    """True for schedules stepped once per epoch with the validation loss (plateau)."""
    return isinstance(scheduler, lr_scheduler.ReduceLROnPlateau)


# ----------------------------------------------------------------------------------------------------
# Stacked optimizers: one update for all the members of a stack (launcher.py)


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[K] per-member values shaped [K, 1, ...] in `like`'s dtype, to broadcast against a stacked tensor."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _classes() -> tuple[type, ...]:
    """The optimizer classes with a stacked form."""
    o = torch.optim
    return (o.SGD, o.Adagrad, o.RMSprop, o.Adadelta, o.Adam, o.AdamW, o.NAdam, Yogi)

_SETTINGS = {  # per class: the settings read from each member's param group (those that may differ per member)
    "SGD": ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
    "Adagrad": ("lr", "lr_decay", "weight_decay", "eps", "initial_accumulator_value"),
    "RMSprop": ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"),
    "Adadelta": ("lr", "rho", "eps", "weight_decay"),
    "Adam": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    "AdamW": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    "NAdam": ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay"),
    "Yogi": ("lr", "betas", "eps", "weight_decay", "initial_accumulator"),
}
_UNSTACKED_FLAGS = ("maximize", "foreach", "capturable", "differentiable", "fused")  # must be off (or None) to stack


def stacked_form(optimizers: list[Optimizer]) -> Optional[str]:
    """Why these members' optimizers cannot step as one stacked update, or None when they can: the same
    class (one of _classes()), one param group each, and settings that change only numbers, not the algorithm,
    where they differ (amsgrad, centered, nesterov and RMSprop's momentum on or off must agree)."""
    name = type(optimizers[0]).__name__
    if type(optimizers[0]) not in _classes():
        return f"{type(optimizers[0]).__module__}.{name} has no stacked form"
    if any(type(o) is not type(optimizers[0]) or len(o.param_groups) != 1 for o in optimizers):
        return "the members' optimizers differ in class or have several parameter groups"
    groups = [o.param_groups[0] for o in optimizers]
    if any(g.get(flag) for g in groups for flag in _UNSTACKED_FLAGS):
        return f"an optimizer setting among {', '.join(_UNSTACKED_FLAGS)} is on"
    for switch in ("amsgrad", "centered", "nesterov", "decoupled_weight_decay"):
        if len({bool(g.get(switch)) for g in groups}) > 1:
            return f"{switch} differs between the members"
    if name == "RMSprop" and len({g["momentum"] > 0 for g in groups}) > 1:
        return "RMSprop momentum is on for some members and off for others"
    if name in ("Adam", "AdamW") and groups[0].get("amsgrad"):
        return "amsgrad has no stacked form"
    return None


class StackedOptimizer:
    """The members' optimizers (each a torch.optim one over its own views into the stack) as one update
    over the stacked parameters [K, ...]: every member's settings (lr, weight decay, momentum, dampening,
    betas, eps, rho, alpha, ...) are [K] tensors broadcast against the weights, so a step loops over the
    parameter tensors, never over the members; the arithmetic is torch's own single-tensor one, member by
    member. The learning rates are read from the members' param groups at each step (their schedules set
    them). The state lives in stacked tensors, and each member's optimizer holds views of its slices, so
    its state_dict() is a torch.optim state that resumes alone (the step-dependent coefficients come from
    one count per member: its tensors step together). `active` ([K] bools) freezes the members that have stopped: neither
    their weights nor their state move."""

    COUNTED = ("Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam", "Yogi")  # torch keeps a "step" in their state

    def __init__(self, optimizers: list[Optimizer], stacked: list[torch.Tensor], members: list[list[torch.Tensor]]):
        self.optimizers, self.params, self.members = optimizers, stacked, members  # members[k][i]: member k's view of stacked[i]
        self.kind = type(optimizers[0]).__name__
        groups = [o.param_groups[0] for o in optimizers]
        device = stacked[0].device
        self.settings: dict[str, torch.Tensor] = {}
        for key in _SETTINGS[self.kind]:
            if key == "betas":
                self.settings["beta1"] = torch.tensor([g["betas"][0] for g in groups], dtype=torch.float64, device=device)
                self.settings["beta2"] = torch.tensor([g["betas"][1] for g in groups], dtype=torch.float64, device=device)
            elif key != "lr" and key in groups[0] and not isinstance(groups[0][key], bool):  # (the rates: at every step)
                self.settings[key] = torch.tensor([float(g[key]) for g in groups], dtype=torch.float64, device=device)
        self.flags = {k: bool(groups[0].get(k)) for k in ("nesterov", "centered", "decoupled_weight_decay")}
        self.flags["momentum"] = self.kind in ("SGD", "RMSprop") and bool(groups[0]["momentum"] > 0)
        wd = self.settings.get("weight_decay")
        self.decay = None if wd is None or not bool((wd != 0).any()) else (
            "decoupled" if self.kind == "AdamW" or self.flags["decoupled_weight_decay"] else "l2")  # fmt: skip
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in stacked]
        self.count: Optional[torch.Tensor] = None  # the members' step counts [K] (float32, as torch keeps them)
        self._constant: dict[tuple, torch.Tensor] = {}  # (name, ndim, dtype) -> a setting shaped [K, 1, ...]
        self._now: dict[tuple, torch.Tensor] = {}  # the same for this step's coefficients
        self._started = False  # the first step adopts the members' own states (a loaded checkpoint's)

    def _c(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """A setting or this step's coefficient, [K] shaped [K, 1, ...] in `like`'s dtype (made once)."""
        key = (name, like.dim(), like.dtype)
        cache = self._constant if name in self.settings else self._now
        if key not in cache:
            cache[key] = _per_member(self.settings[name] if name in self.settings else self._coef[name], like)
        return cache[key]

    @torch.no_grad()
    def step(self, grads: Optional[list] = None, active: Optional[torch.Tensor] = None) -> None:
        """One update of every member: `grads` aligned with the stacked parameters (default: their .grad)."""
        device = self.params[0].device
        lr = torch.tensor([o.param_groups[0]["lr"] for o in self.optimizers], dtype=torch.float64, device=device)
        frozen = None if active is None or bool(active.all()) else ~active
        grads = [p.grad for p in self.params] if grads is None else grads
        if not self._started:
            self._adopt()
            self._started = True
        increment = 1 if frozen is None else active.to(torch.float32)
        if self.kind in self.COUNTED:
            if self.count is None:
                self.count = torch.zeros(len(self.optimizers), dtype=torch.float32, device=device)
            self.count += increment
        self._coef, self._now = self._coefficients(lr), {}
        for i, p in enumerate(self.params):
            if grads[i] is None:
                continue
            fresh, state = not self.state[i], self.state[i]
            kept = None if frozen is None else (p[frozen].clone(), {k: v[frozen].clone() for k, v in state.items() if k != "step"})
            g = grads[i] if self.decay != "l2" else grads[i] + self._c("weight_decay", p) * p
            if self.decay == "decoupled":
                p.mul_(self._c("decoupled", p))
            getattr(self, f"_{self.kind.lower()}")(p, g, state)
            if "step" in state:  # each tensor's own count, as torch keeps it
                state["step"] += increment
            if kept is not None:  # stopped members: their weights and state as they were
                p[frozen] = kept[0]
                for k, v in kept[1].items():
                    state[k][frozen] = v
            if fresh and state:
                if self.count is not None:
                    state["step"] = self.count.clone()
                self._share(i)
        for o in self.optimizers:  # what torch's own step() records for its schedulers: they step after it
            o._opt_called = True

    def _coefficients(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """This step's [K] coefficients (float64, from the rates and the step counts), as torch computes them."""
        c: dict[str, torch.Tensor] = {"lr": lr}
        s = self.settings
        if self.decay == "decoupled":
            c["decoupled"] = 1 - lr * s["weight_decay"]
        step = None if self.count is None else self.count.to(torch.float64)
        if self.kind == "Adagrad":
            c["clr"] = lr / (1 + (step - 1) * s["lr_decay"])
        elif self.kind in ("Adam", "AdamW"):
            c["step_size"] = lr / (1 - s["beta1"] ** step)
            c["bias2_sqrt"] = (1 - s["beta2"] ** step).sqrt()
        elif self.kind == "NAdam":
            c["mu"] = s["beta1"] * (1.0 - 0.5 * 0.96 ** (step * s["momentum_decay"]))
            c["mu_next"] = s["beta1"] * (1.0 - 0.5 * 0.96 ** ((step + 1) * s["momentum_decay"]))
            c["bias2"] = 1 - s["beta2"] ** step
        for name in ("beta1", "beta2", "alpha", "rho", "dampening"):
            if name in s:
                c[f"1-{name}"] = 1 - s[name]
        return c

    def _adopt(self) -> None:
        """The members' own states (a checkpoint loaded into their optimizers), stacked: the run resumes."""
        for i in range(len(self.params)):
            states = [o.state.get(self.members[k][i]) for k, o in enumerate(self.optimizers)]
            if all(states) and len({tuple(s) for s in states}) == 1:
                device = self.params[i].device
                self.state[i] = {key: torch.stack([torch.as_tensor(s[key], device=device) for s in states]) for key in states[0]}
                if "step" in self.state[i]:
                    self.state[i]["step"] = self.state[i]["step"].to(torch.float32)
                    self.count = self.state[i]["step"].clone()
                self._share(i)

    def _share(self, i: int) -> None:
        """Member k's optimizer state for its view of parameter i: views of the stacked state's slices."""
        for k, opt in enumerate(self.optimizers):
            opt.state[self.members[k][i]] = {name: value[k] for name, value in self.state[i].items()}

    def _sgd(self, p, g, state):
        if self.flags["momentum"]:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = g.clone()
            else:
                buf.mul_(self._c("momentum", p)).add_(g * (1 - self._c("dampening", p)))
            g = g + self._c("momentum", p) * buf if self.flags["nesterov"] else buf
        p.sub_(self._c("lr", p) * g)

    def _adagrad(self, p, g, state):
        if "sum" not in state:
            state["sum"] = torch.ones_like(p) * self._c("initial_accumulator_value", p)
        state["sum"].addcmul_(g, g, value=1)
        p.sub_(self._c("clr", p) * g / state["sum"].sqrt().add_(self._c("eps", p)))

    def _rmsprop(self, p, g, state):
        if "square_avg" not in state:
            state["square_avg"] = torch.zeros_like(p)
            if self.flags["momentum"]:
                state["momentum_buffer"] = torch.zeros_like(p)
            if self.flags["centered"]:
                state["grad_avg"] = torch.zeros_like(p)
        square_avg = state["square_avg"]
        square_avg.mul_(self._c("alpha", p)).add_(self._c("1-alpha", p) * g * g)
        if self.flags["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(g, self._c("1-alpha", p))
            avg = (square_avg - grad_avg * grad_avg).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(self._c("eps", p))
        if self.flags["momentum"]:
            buf = state["momentum_buffer"]
            buf.mul_(self._c("momentum", p)).add_(g / avg)
            p.sub_(self._c("lr", p) * buf)
        else:
            p.sub_(self._c("lr", p) * g / avg)

    def _adadelta(self, p, g, state):
        if "square_avg" not in state:
            state["square_avg"], state["acc_delta"] = torch.zeros_like(p), torch.zeros_like(p)
        rho, eps = self._c("rho", p), self._c("eps", p)
        state["square_avg"].mul_(rho).add_(self._c("1-rho", p) * g * g)
        std = state["square_avg"].add(eps).sqrt_()
        delta = state["acc_delta"].add(eps).sqrt_().div_(std).mul_(g)
        state["acc_delta"].mul_(rho).add_(self._c("1-rho", p) * delta * delta)
        p.sub_(self._c("lr", p) * delta)

    def _moments(self, p, state, fill: float | torch.Tensor = 0.0):
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p) + fill

    def _adam(self, p, g, state):
        self._moments(p, state)
        state["exp_avg"].lerp_(g, self._c("1-beta1", p))
        state["exp_avg_sq"].mul_(self._c("beta2", p)).add_(self._c("1-beta2", p) * g * g)
        denom = (state["exp_avg_sq"].sqrt() / self._c("bias2_sqrt", p)).add_(self._c("eps", p))
        p.sub_(self._c("step_size", p) * state["exp_avg"] / denom)

    _adamw = _adam

    def _nadam(self, p, g, state):
        self._moments(p, state)
        if "mu_product" not in state:
            state["mu_product"] = torch.ones(p.shape[0], dtype=torch.float32, device=p.device)
        state["mu_product"] *= self._coef["mu"].to(torch.float32)
        product, mu, mu_next = state["mu_product"].to(torch.float64), self._coef["mu"], self._coef["mu_next"]
        state["exp_avg"].lerp_(g, self._c("1-beta1", p))
        state["exp_avg_sq"].mul_(self._c("beta2", p)).add_(self._c("1-beta2", p) * g * g)
        denom = (state["exp_avg_sq"] / self._c("bias2", p)).sqrt().add_(self._c("eps", p))
        lr = self._coef["lr"]
        p.sub_(_per_member(lr * (1.0 - mu) / (1.0 - product), p) * g / denom)
        p.sub_(_per_member(lr * mu_next / (1.0 - product * mu_next), p) * state["exp_avg"] / denom)

    def _yogi(self, p, g, state):
        self._moments(p, state, self._c("initial_accumulator", p))
        g2 = g * g
        state["exp_avg"].mul_(self._c("beta1", p)).add_(self._c("1-beta1", p) * g)
        state["exp_avg_sq"].sub_(self._c("1-beta2", p) * torch.sign(state["exp_avg_sq"] - g2) * g2)
        p.sub_(self._c("lr", p) * state["exp_avg"] / state["exp_avg_sq"].sqrt().add_(self._c("eps", p)))


class StackedUpdate:
    """The step after the backward pass, for the K members of a stack at once (a run alone is a stack of
    one): clip each gradient element (clip_grad_value), measure each member's global gradient norm and clip
    to it (clip_grad_norm), one StackedOptimizer step, then the max-norm constraint. Every per-member setting
    is a [K] tensor (inf where a member has none), so nothing here loops over members. Returns the members'
    gradient norms before clipping, [K], on the device.

    `params`: the stacked tensors [K, ...]; `member_params[k]`: member k's parameter objects (its optimizer's),
    views of the stacks; `grads()`: the stacked gradients, aligned with `params` (None for one without);
    `weights`: the indices in `params` of the weight matrices and filters that max-norm constrains."""

    def __init__(self, optimizers: list[Optimizer], params: list[torch.Tensor], member_params: list[list[torch.Tensor]],
                 weights: list[int], regularization: list, grads):  # fmt: skip
        self.optimizer = StackedOptimizer(optimizers, params, member_params)
        self.params, self.weights, self.grads = params, weights, grads
        device = params[0].device

        def per_member(key: str) -> Optional[torch.Tensor]:
            values = [getattr(r, key) for r in regularization]
            if all(v is None for v in values):
                return None
            return torch.tensor([math.inf if v is None else float(v) for v in values], device=device)

        self.clip_value, self.clip_norm, self.max_norm = per_member("clip_grad_value"), per_member("clip_grad_norm"), per_member("max_norm")

    @torch.no_grad()
    def __call__(self, active: Optional[torch.Tensor] = None) -> torch.Tensor:
        grads = self.grads()
        present = [g for g in grads if g is not None]
        K = self.params[0].shape[0]
        if self.clip_value is not None:
            for g in present:
                torch.clamp(g, -_per_member(self.clip_value, g), _per_member(self.clip_value, g), out=g)
        if present:  # each member's global norm: its tensors' norms (as torch's clip_grad_norm_ takes them), then their norm
            norms = torch.stack(torch._foreach_norm([g[k] for g in present for k in range(K)])).reshape(len(present), K)
            total = norms[0] * norms[0]
            for row in norms[1:]:  # in order, tensor by tensor: the same sum whatever K is
                total = total + row * row
            norm = total.sqrt()
        else:
            norm = torch.zeros(K, device=self.params[0].device)
        if self.clip_norm is not None:
            coef = torch.clamp(self.clip_norm / (norm + 1e-6), max=1.0)
            for g in present:
                g.mul_(_per_member(coef, g))
        self.optimizer.step(grads, active)
        if self.max_norm is not None:  # each unit's incoming weights (a row; a filter) back inside the ball
            for i in self.weights:
                w = self.params[i]
                rows = torch.linalg.vector_norm(w.flatten(2), dim=2).reshape(*w.shape[:2], *([1] * (w.dim() - 2)))
                limit = _per_member(self.max_norm, rows)
                w.mul_(torch.where(rows > limit, limit / (rows + 1e-7), torch.ones_like(rows)))
        return norm


def stack_of_one(optimizer: Optimizer, weights: list[torch.Tensor], regularization) -> Optional[StackedUpdate]:
    """A run alone as a stack of one: its step after the backward pass as a StackedUpdate over [1, ...]
    views of its parameters, so that it computes exactly what member k of any stack computes. None where
    the optimizer has no stacked form (or several parameter groups: transfer's fine-tuning rates)."""
    if stacked_form([optimizer]) is not None:
        return None
    group = optimizer.param_groups[0]["params"]
    ids = {id(w) for w in weights}
    return StackedUpdate([optimizer], [p.detach().unsqueeze(0) for p in group], [group],
                         [i for i, p in enumerate(group) if id(p) in ids], [regularization],
                         grads=lambda: [None if p.grad is None else p.grad.unsqueeze(0) for p in group])  # fmt: skip
