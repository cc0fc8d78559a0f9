"""Batch-wise augmentation: one call transforms a whole batch on its device (no per-sample Python)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def random_affine(
    x: Tensor, g: torch.Generator, degrees: float = 10.0, shift: float = 0.1, scale: float = 0.1
) -> Tensor:
    """Small random rotation, translation (fraction of the size) and scaling per image (MNIST)."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=g, device=x.device) * 2 - 1
    angle = u[:, 0] * math.radians(degrees)
    s = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack(
        [torch.stack([cos, -sin, u[:, 2] * shift * 2], 1), torch.stack([sin, cos, u[:, 3] * shift * 2], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="border")


def crop_flip(x: Tensor, g: torch.Generator, padding: int = 4) -> Tensor:
    """Random crop from the image padded by `padding` (reflect), and a horizontal flip half the time (CIFAR-10)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=g, device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1, 1), generator=g, device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, 1, 1, 1, generator=g, device=x.device) < 0.5
    return torch.where(flip, out.flip(3), out).contiguous()


# The augmentation each image set gets with data.augment=true.
FOR_DATASET = {"mnist": random_affine, "cifar10": crop_flip}
