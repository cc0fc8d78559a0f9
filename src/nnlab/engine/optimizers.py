"""The optimizers' arithmetic over stacked parameters: one plain function per optimizer (HFTA's functional
form), each updating a [K, ...] tensor for K members at once, every member with its own settings.

    sgd(p, g, state, c, on)      p: the stacked parameter, g: its gradient, state: its stacked state
                                 (momentum buffer, moments, ...), c(name): a setting or this step's
                                 coefficient as [K, 1, ...], on: the switches the members share

The arithmetic is torch's own single-tensor one (torch/optim/*.py, `_single_tensor_*`), member by member,
so a member computes what torch's own `step()` computes for its run alone (tests/test_engine.py holds it to
1e-5 over 200 steps). StackedOptimizer holds the members' settings and state and calls the function of
their class (STEPS); the members' own torch.optim objects keep views of their slices of the state, so a
checkpoint is a torch.optim state_dict that resumes anywhere. Yogi, the one optimizer torch lacks, is here
as a torch.optim class too (conf/optimizer/yogi.yaml).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim import Optimizer


class Yogi(Optimizer):
    """Yogi (Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018, Algorithm 2):
    Adam whose second moment moves additively, by at most (1 - beta2) * g^2 per step, in the direction of g^2:

        m = beta1 * m + (1 - beta1) * g
        v = v - (1 - beta2) * sign(v - g^2) * g^2
        x = x - lr * m / (sqrt(v) + eps)

    so that v cannot collapse fast after a burst of large gradients (Adam's multiplicative v can). As in
    the paper: no bias correction, v starts at `initial_accumulator`, eps = 1e-3. `weight_decay` adds
    weight_decay * x to the gradient (L2), as in torch.optim.Adam."""

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-3,
        initial_accumulator: float = 1e-6,
        weight_decay: float = 0.0,
    ):
        if lr <= 0 or eps <= 0 or initial_accumulator < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(
                f"invalid Yogi settings: lr={lr}, betas={betas}, eps={eps}, "
                f"initial_accumulator={initial_accumulator}, weight_decay={weight_decay}"
            )
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, initial_accumulator=initial_accumulator, weight_decay=weight_decay
        )
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
                g = p.grad if group["weight_decay"] == 0 else p.grad + group["weight_decay"] * p
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.full_like(
                        p, group["initial_accumulator"], memory_format=torch.preserve_format
                    )
                m, v = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                g2 = g * g  # (elementwise, without fused multiply-adds: the engine's yogi() rounds the same)
                m.mul_(beta1).add_((1 - beta1) * g)
                v.sub_((1 - beta2) * torch.sign(v - g2) * g2)
                p.sub_(group["lr"] * m / v.sqrt().add_(group["eps"]))
        return loss


# ----------------------------------------------------------------------------------------------------------------------
# one function per optimizer: (p, g, state, c, on)


def sgd(p, g, state, c, on) -> None:
    if on["momentum"]:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = g.clone()
        else:
            buf.mul_(c("momentum")).add_(g * (1 - c("dampening")))
        g = g + c("momentum") * buf if on["nesterov"] else buf
    p.sub_(c("lr") * g)


def adagrad(p, g, state, c, on) -> None:
    if "sum" not in state:
        state["sum"] = torch.ones_like(p) * c("initial_accumulator_value")
    state["sum"].addcmul_(g, g, value=1)
    p.sub_(c("clr") * g / state["sum"].sqrt().add_(c("eps")))


def rmsprop(p, g, state, c, on) -> None:
    if "square_avg" not in state:
        state["square_avg"] = torch.zeros_like(p)
        if on["momentum"]:
            state["momentum_buffer"] = torch.zeros_like(p)
        if on["centered"]:
            state["grad_avg"] = torch.zeros_like(p)
    square_avg = state["square_avg"]
    square_avg.mul_(c("alpha")).add_(c("1-alpha") * g * g)
    if on["centered"]:
        grad_avg = state["grad_avg"]
        grad_avg.lerp_(g, c("1-alpha"))
        avg = (square_avg - grad_avg * grad_avg).sqrt_()
    else:
        avg = square_avg.sqrt()
    avg = avg.add_(c("eps"))
    if on["momentum"]:
        buf = state["momentum_buffer"]
        buf.mul_(c("momentum")).add_(g / avg)
        p.sub_(c("lr") * buf)
    else:
        p.sub_(c("lr") * g / avg)


def adadelta(p, g, state, c, on) -> None:
    if "square_avg" not in state:
        state["square_avg"], state["acc_delta"] = torch.zeros_like(p), torch.zeros_like(p)
    rho, eps = c("rho"), c("eps")
    state["square_avg"].mul_(rho).add_(c("1-rho") * g * g)
    std = state["square_avg"].add(eps).sqrt_()
    delta = state["acc_delta"].add(eps).sqrt_().div_(std).mul_(g)
    state["acc_delta"].mul_(rho).add_(c("1-rho") * delta * delta)
    p.sub_(c("lr") * delta)


def _moments(p, state, fill: float | torch.Tensor = 0.0) -> None:
    if "exp_avg" not in state:
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p) + fill


def adam(p, g, state, c, on) -> None:
    """Adam and AdamW (whose decoupled decay the update applies before: StackedOptimizer.step)."""
    _moments(p, state)  # (in place where it can: a stack of 64 toy MLPs stepped in 0.8 ms, not 2.1 ms)
    state["exp_avg"].lerp_(g, c("1-beta1"))
    state["exp_avg_sq"].mul_(c("beta2")).addcmul_(g, g * c("1-beta2"))
    denom = state["exp_avg_sq"].sqrt().div_(c("bias2_sqrt")).add_(c("eps"))
    p.addcdiv_(state["exp_avg"] * c("step_size"), denom, value=-1)


def nadam(p, g, state, c, on) -> None:
    _moments(p, state)
    if "mu_product" not in state:
        state["mu_product"] = torch.ones(p.shape[0], dtype=torch.float32, device=p.device)
    state["mu_product"] *= c.raw("mu").to(torch.float32)
    product, mu, mu_next = state["mu_product"].to(torch.float64), c.raw("mu"), c.raw("mu_next")
    state["exp_avg"].lerp_(g, c("1-beta1"))
    state["exp_avg_sq"].mul_(c("beta2")).add_(c("1-beta2") * g * g)
    denom = (state["exp_avg_sq"] / c("bias2")).sqrt().add_(c("eps"))
    lr = c.raw("lr")
    p.sub_(per_member(lr * (1.0 - mu) / (1.0 - product), p) * g / denom)
    p.sub_(per_member(lr * mu_next / (1.0 - product * mu_next), p) * state["exp_avg"] / denom)


def yogi(p, g, state, c, on) -> None:
    _moments(p, state, c("initial_accumulator"))
    g2 = g * g
    state["exp_avg"].mul_(c("beta1")).add_(c("1-beta1") * g)
    state["exp_avg_sq"].sub_(c("1-beta2") * torch.sign(state["exp_avg_sq"] - g2) * g2)
    p.sub_(c("lr") * state["exp_avg"] / state["exp_avg_sq"].sqrt().add_(c("eps")))


Step = Callable[..., None]
STEPS: dict[str, Step] = {  # an optimizer class's name -> its arithmetic
    "SGD": sgd,
    "Adagrad": adagrad,
    "RMSprop": rmsprop,
    "Adadelta": adadelta,
    "Adam": adam,
    "AdamW": adam,
    "NAdam": nadam,
    "Yogi": yogi,
}
SETTINGS = {  # per class: the settings read from each member's param group (those that may differ per member)
    "SGD": ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
    "Adagrad": ("lr", "lr_decay", "weight_decay", "eps", "initial_accumulator_value"),
    "RMSprop": ("lr", "alpha", "eps", "weight_decay", "momentum", "centered"),
    "Adadelta": ("lr", "rho", "eps", "weight_decay"),
    "Adam": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    "AdamW": ("lr", "betas", "eps", "weight_decay", "amsgrad"),
    "NAdam": ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay"),
    "Yogi": ("lr", "betas", "eps", "weight_decay", "initial_accumulator"),
}
COUNTED = ("Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam", "Yogi")  # torch keeps a "step" in their state
UNSTACKED_FLAGS = ("maximize", "foreach", "capturable", "differentiable", "fused")  # must be off (or None) to stack


def classes() -> tuple[type, ...]:
    """The optimizer classes with a stacked form."""
    o = torch.optim
    return (o.SGD, o.Adagrad, o.RMSprop, o.Adadelta, o.Adam, o.AdamW, o.NAdam, Yogi)


def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[K] per-member values shaped [K, 1, ...] in `like`'s dtype, to broadcast against a stacked tensor."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def stacked_form(optimizers: list[Optimizer]) -> str | None:
    """Why these members' optimizers cannot step as one stacked update, or None when they can: the same
    class (one of classes()), one param group each, and settings that change only numbers, not the
    algorithm, where they differ (amsgrad, centered, nesterov and RMSprop's momentum on or off must agree)."""
    name = type(optimizers[0]).__name__
    if type(optimizers[0]) not in classes():
        return f"{type(optimizers[0]).__module__}.{name} has no stacked form"
    if any(type(o) is not type(optimizers[0]) or len(o.param_groups) != 1 for o in optimizers):
        return "the members' optimizers differ in class or have several parameter groups"
    groups = [o.param_groups[0] for o in optimizers]
    on = [flag for g in groups for flag in UNSTACKED_FLAGS if g.get(flag)]
    if on:
        return f"optimizer.{on[0]} is on (torch's own implementation)"
    for switch in ("amsgrad", "centered", "nesterov", "decoupled_weight_decay"):
        if len({bool(g.get(switch)) for g in groups}) > 1:
            return f"{switch} differs between the members"
    if name == "RMSprop" and len({g["momentum"] > 0 for g in groups}) > 1:
        return "RMSprop momentum is on for some members and off for others"
    if name in ("Adam", "AdamW") and groups[0].get("amsgrad"):
        return "amsgrad has no stacked form"
    return None


class _Coefficients:
    """c(name): a setting or this step's coefficient as [K, 1, ...] in the parameter's dtype (made once
    per step and shape); c.raw(name): the [K] float64 values."""

    def __init__(self, opt: StackedOptimizer, like: torch.Tensor) -> None:
        self.opt, self.like = opt, like

    def __call__(self, name: str) -> torch.Tensor:
        opt, like = self.opt, self.like
        key = (name, like.dim(), like.dtype)
        cache = opt._constant if name in opt.settings else opt._now
        if key not in cache:
            cache[key] = per_member(self.raw(name), like)
        return cache[key]

    def raw(self, name: str) -> torch.Tensor:
        return self.opt.settings[name] if name in self.opt.settings else self.opt._coef[name]


class StackedOptimizer:
    """The members' optimizers (each a torch.optim one over its own views into the stack) as one update
    over the stacked parameters [K, ...]: every member's settings (lr, weight decay, momentum, dampening,
    betas, eps, rho, alpha, ...) are [K] tensors broadcast against the weights, so a step loops over the
    parameter tensors, never over the members. The learning rates are read from the members' param groups
    at each step (their schedules set them). The state lives in stacked tensors, and each member's
    optimizer holds views of its slices, so its state_dict() is a torch.optim state that resumes alone (the
    step-dependent coefficients come from one count per member: its tensors step together). `active` ([K]
    bools) freezes the members that have stopped: neither their weights nor their state move."""

    def __init__(self, optimizers: list[Optimizer], stacked: list[torch.Tensor], members: list[list[torch.Tensor]]):
        self.optimizers, self.params, self.members = optimizers, stacked, members  # members[k][i]: k's view of [i]
        self.kind = type(optimizers[0]).__name__
        self.arithmetic = STEPS[self.kind]
        groups = [o.param_groups[0] for o in optimizers]
        device = stacked[0].device
        self.settings: dict[str, torch.Tensor] = {}
        for key in SETTINGS[self.kind]:
            if key == "betas":
                self.settings["beta1"] = torch.tensor(
                    [g["betas"][0] for g in groups], dtype=torch.float64, device=device
                )
                self.settings["beta2"] = torch.tensor(
                    [g["betas"][1] for g in groups], dtype=torch.float64, device=device
                )
            elif key != "lr" and key in groups[0] and not isinstance(groups[0][key], bool):  # (rates: every step)
                self.settings[key] = torch.tensor([float(g[key]) for g in groups], dtype=torch.float64, device=device)
        self.on = {k: bool(groups[0].get(k)) for k in ("nesterov", "centered", "decoupled_weight_decay")}
        self.on["momentum"] = self.kind in ("SGD", "RMSprop") and bool(groups[0]["momentum"] > 0)
        wd = self.settings.get("weight_decay")
        decoupled = self.kind == "AdamW" or self.on["decoupled_weight_decay"]
        self.decay = None if wd is None or not bool((wd != 0).any()) else ("decoupled" if decoupled else "l2")
        self.state: list[dict[str, torch.Tensor]] = [{} for _ in stacked]
        self.count: torch.Tensor | None = None  # the members' step counts [K] (float32, as torch keeps them)
        self._constant: dict[tuple, torch.Tensor] = {}  # (name, ndim, dtype) -> a setting shaped [K, 1, ...]
        self._now: dict[tuple, torch.Tensor] = {}  # the same for this step's coefficients
        self._coef: dict[str, torch.Tensor] = {}
        self._started = False  # the first step adopts the members' own states (a loaded checkpoint's)

    @torch.no_grad()
    def step(self, grads: list | None = None, active: torch.Tensor | None = None) -> None:
        """One update of every member: `grads` aligned with the stacked parameters (default: their .grad)."""
        device = self.params[0].device
        lr = torch.tensor([o.param_groups[0]["lr"] for o in self.optimizers], dtype=torch.float64, device=device)
        frozen = None if active is None or bool(active.all()) else ~active
        grads = [p.grad for p in self.params] if grads is None else grads
        if not self._started:
            self._adopt()
            self._started = True
        increment = 1 if frozen is None else active.to(torch.float32)
        if self.kind in COUNTED:
            if self.count is None:
                self.count = torch.zeros(len(self.optimizers), dtype=torch.float32, device=device)
            self.count += increment
        self._coef, self._now = self._coefficients(lr), {}
        for i, p in enumerate(self.params):
            if grads[i] is None:
                continue
            fresh, state, c = not self.state[i], self.state[i], _Coefficients(self, p)
            kept = (
                None
                if frozen is None
                else (p[frozen].clone(), {k: v[frozen].clone() for k, v in state.items() if k != "step"})
            )
            g = grads[i] if self.decay != "l2" else grads[i] + c("weight_decay") * p
            if self.decay == "decoupled":
                p.mul_(c("decoupled"))
            self.arithmetic(p, g, state, c, self.on)
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
        for (
            o
        ) in self.optimizers:  # torch's schedulers warn unless the optimizer's own step() ran: it did not, by design
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
                self.state[i] = {
                    key: torch.stack([torch.as_tensor(s[key], device=device) for s in states]) for key in states[0]
                }
                if "step" in self.state[i]:
                    self.state[i]["step"] = self.state[i]["step"].to(torch.float32)
                    self.count = self.state[i]["step"].clone()
                self._share(i)

    def _share(self, i: int) -> None:
        """Member k's optimizer state for its view of parameter i: views of the stacked state's slices."""
        for k, opt in enumerate(self.optimizers):
            opt.state[self.members[k][i]] = {name: value[k] for name, value in self.state[i].items()}
