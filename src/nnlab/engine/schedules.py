"""Learning-rate schedules (conf/schedule/*.yaml). Every factory takes the same run-time facts,
`(optimizer, total_steps, steps_per_epoch, **settings)`, and returns a torch scheduler that the training
loop steps once per optimizer step, except `plateau`, stepped once per epoch with the validation loss
(per_epoch). Sizes in the configs are in epochs; they are turned into steps here. A schedule sets the rate
in the optimizer's param group; the engine's update reads it from there at every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer, lr_scheduler


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
