"""Learning-rate schedules. Every factory takes the same run-time facts,
`(optimizer, total_steps, steps_per_epoch, **settings)`, and returns a torch scheduler that the
training loop steps once per optimizer step, except `plateau`, stepped once per epoch with the
validation loss. Sizes in the configs are in epochs; they are turned into steps here.

Optimizers: conf/optimizer/*.yaml name torch.optim classes directly; the one torch lacks, Yogi, is here.
"""

from __future__ import annotations

import math
from typing import Sequence

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
