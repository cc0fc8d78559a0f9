"""Toy 2-D classification sets, generated deterministically from a seed.

Each function returns (x_train, y_train, x_test, y_test): float32 points (N, 2) and int64 labels.
`scale` and `offset` turn the points into raw, badly scaled features (x * scale + offset).
The test points are drawn from the same distribution as, but independently of, the training points.
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def _split(make, n_train: int, n_test: int, seed: int, scale: float = 1.0, offset: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    x, y = make(n_train + n_test, g)
    x = x * scale + offset  # raw, badly scaled features: what preprocessing is for
    perm = torch.randperm(len(y), generator=g)
    x, y = x[perm].float(), y[perm].long()
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _balanced_labels(n: int, classes: int) -> Tensor:
    return torch.arange(n) % classes


def moons(n_train: int = 1000, n_test: int = 1000, noise: float = 0.2, seed: int = 0, scale: float = 1.0, offset: float = 0.0):
    def make(n, g):
        y = _balanced_labels(n, 2)
        t = torch.rand(n, generator=g) * math.pi
        x = torch.stack([torch.cos(t), torch.sin(t)], 1)
        x = torch.where(y[:, None] == 1, torch.stack([1 - x[:, 0], 0.5 - x[:, 1]], 1), x)
        return x + noise * torch.randn(n, 2, generator=g), y

    return _split(make, n_train, n_test, seed, scale, offset)


def circles(n_train: int = 1000, n_test: int = 1000, noise: float = 0.1, factor: float = 0.5, seed: int = 0, scale: float = 1.0, offset: float = 0.0):
    def make(n, g):
        y = _balanced_labels(n, 2)
        t = torch.rand(n, generator=g) * 2 * math.pi
        r = torch.where(y == 1, factor, 1.0)
        x = r[:, None] * torch.stack([torch.cos(t), torch.sin(t)], 1)
        return x + noise * torch.randn(n, 2, generator=g), y

    return _split(make, n_train, n_test, seed, scale, offset)


def spirals(n_train: int = 1000, n_test: int = 1000, noise: float = 0.2, classes: int = 3, seed: int = 0, scale: float = 1.0, offset: float = 0.0):
    def make(n, g):
        y = _balanced_labels(n, classes)
        r = torch.rand(n, generator=g)  # radius 0..1 along each arm
        t = y * (2 * math.pi / classes) + 4 * r + noise * torch.randn(n, generator=g)
        return r[:, None] * torch.stack([torch.sin(t), torch.cos(t)], 1), y

    return _split(make, n_train, n_test, seed, scale, offset)


def xor(n_train: int = 1000, n_test: int = 1000, noise: float = 0.3, seed: int = 0, scale: float = 1.0, offset: float = 0.0):
    def make(n, g):
        corner = _balanced_labels(n, 4)  # each corner equally often
        centre = torch.stack([corner % 2, corner // 2], 1).float() * 2 - 1
        y = (centre[:, 0] * centre[:, 1] < 0).long()
        return centre + noise * torch.randn(n, 2, generator=g), y

    return _split(make, n_train, n_test, seed, scale, offset)


def blobs(n_train: int = 1000, n_test: int = 1000, noise: float = 1.0, classes: int = 4, seed: int = 0, scale: float = 1.0, offset: float = 0.0):
    def make(n, g):
        centres = (torch.rand(classes, 2, generator=g) * 2 - 1) * 5
        y = _balanced_labels(n, classes)
        return centres[y] + noise * torch.randn(n, 2, generator=g), y

    return _split(make, n_train, n_test, seed, scale, offset)
