"""Dropout that draws its masks from the run's own generator.

torch's nn.Dropout draws from the process's global generator, so a run's masks would depend on whatever
else the process draws: in a stack, the other members. nnlab's Dropout draws from `generator` (the loop
gives every Dropout of a run that run's noise generator, see use_generator), and a stack draws each
member's masks from that member's generator with the same function (mask()), so member k of a stack sees
the masks its run alone sees, whatever K or its place. Without a generator it draws from the global one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ALPHA = 1.7580993408473766  # SELU's -alpha * lambda: where AlphaDropout puts dropped units (as torch does)


def mask(like: torch.Tensor, p: float, generator: torch.Generator | None, alpha: bool = False):
    """(scale, shift) with dropout(x) = x * scale + shift: torch's dropout and alpha dropout formulas."""
    keep = torch.empty_like(like).bernoulli_(1 - p, generator=generator)
    if not alpha:
        return keep.div_(1 - p), None
    a = 1.0 / math.sqrt((ALPHA * ALPHA * p + 1) * (1 - p))
    shift = (keep - 1).mul_(ALPHA * a).add_(ALPHA * a * p)
    return keep.mul_(a), shift


def noise(like: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """Gaussian noise of standard deviation `std` shaped like `like` (regularization.hidden_noise)."""
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype).mul_(std)


class Dropout(nn.Module):
    """nn.Dropout (or, with `alpha`, nn.AlphaDropout) drawing from `self.generator`; with `noise`, Gaussian
    noise of that standard deviation added after the mask (regularization.hidden_noise), while training."""

    def __init__(self, p: float = 0.5, alpha: bool = False, noise: float = 0.0):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability has to be in [0, 1), not {p}")
        self.p, self.alpha, self.noise = p, alpha, noise
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.p > 0:
            scale, shift = mask(x, self.p, self.generator, self.alpha)
            x = x * scale if shift is None else x * scale + shift
        return x + noise(x, self.noise, self.generator) if self.noise > 0 else x

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", alpha" if self.alpha else "") + (f", noise={self.noise}" if self.noise else "")


def use_generator(model: nn.Module, generator: torch.Generator) -> None:
    """Every Dropout of `model` draws from `generator` from now on."""
    for m in model.modules():
        if isinstance(m, Dropout):
            m.generator = generator
