"""Activations that torch does not ship. The others are named directly in conf/activation/."""

from __future__ import annotations

import torch
from torch import nn


class Maxout(nn.Module):
    """Maxout (Goodfellow et al. 2013): each unit is the max of k linear pieces.

    The layer before it produces k times as many features; `pieces` tells the model to make it so.
    Works on (N, F) and on (N, C, H, W) (pieces taken over channels).
    """

    def __init__(self, k: int = 2):
        super().__init__()
        self.pieces = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, f = x.shape[:2]
        return x.view(n, f // self.pieces, self.pieces, *x.shape[2:]).amax(2)

    def extra_repr(self) -> str:
        return f"k={self.pieces}"
