"""Toy sets, generated deterministically from a seed: 2-D classification (moons, circles, spirals, xor,
blobs) and 1-D / 2-D regression (sine, ripple, bump).

Each function returns (x_train, y_train, x_test, y_test): float32 points (N, 2) (regression: (N, 1) or
(N, 2)) and int64 labels (regression: float32 targets (N, 1)).
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


def moons(
    n_train: int = 1000, n_test: int = 1000, noise: float = 0.2, seed: int = 0, scale: float = 1.0, offset: float = 0.0
):
    def make(n, g):
        y = _balanced_labels(n, 2)
        t = torch.rand(n, generator=g) * math.pi
        x = torch.stack([torch.cos(t), torch.sin(t)], 1)
        x = torch.where(y[:, None] == 1, torch.stack([1 - x[:, 0], 0.5 - x[:, 1]], 1), x)
        return x + noise * torch.randn(n, 2, generator=g), y

    return _split(make, n_train, n_test, seed, scale, offset)


def circles(
    n_train: int = 1000,
    n_test: int = 1000,
    noise: float = 0.1,
    factor: float = 0.5,
    seed: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
):
    def make(n, g):
        y = _balanced_labels(n, 2)
        t = torch.rand(n, generator=g) * 2 * math.pi
        r = torch.where(y == 1, factor, 1.0)
        x = r[:, None] * torch.stack([torch.cos(t), torch.sin(t)], 1)
        return x + noise * torch.randn(n, 2, generator=g), y

    return _split(make, n_train, n_test, seed, scale, offset)


def spirals(
    n_train: int = 1000,
    n_test: int = 1000,
    noise: float = 0.2,
    classes: int = 3,
    seed: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
):
    def make(n, g):
        y = _balanced_labels(n, classes)
        r = torch.rand(n, generator=g)  # radius 0..1 along each arm
        t = y * (2 * math.pi / classes) + 4 * r + noise * torch.randn(n, generator=g)
        return r[:, None] * torch.stack([torch.sin(t), torch.cos(t)], 1), y

    return _split(make, n_train, n_test, seed, scale, offset)


def xor(
    n_train: int = 1000, n_test: int = 1000, noise: float = 0.3, seed: int = 0, scale: float = 1.0, offset: float = 0.0
):
    def make(n, g):
        corner = _balanced_labels(n, 4)  # each corner equally often
        centre = torch.stack([corner % 2, corner // 2], 1).float() * 2 - 1
        y = (centre[:, 0] * centre[:, 1] < 0).long()
        return centre + noise * torch.randn(n, 2, generator=g), y

    return _split(make, n_train, n_test, seed, scale, offset)


def blobs(
    n_train: int = 1000,
    n_test: int = 1000,
    noise: float = 1.0,
    classes: int = 4,
    seed: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
):
    def make(n, g):
        centres = (torch.rand(classes, 2, generator=g) * 2 - 1) * 5
        y = _balanced_labels(n, classes)
        return centres[y] + noise * torch.randn(n, 2, generator=g), y

    return _split(make, n_train, n_test, seed, scale, offset)


# ----------------------------------------------------------------------------------------------------
# Regression: float targets (N, 1). `outliers` is the fraction of *training* points (the validation split
# is drawn from them) whose target gets a large one-sided error, outlier_scale * (1 + U[0, 1)); the test
# targets stay clean, so the test MSE measures the fit to the true function. `target_scale` and
# `target_offset` turn the targets into large-magnitude ones (y * target_scale + target_offset).

REGRESSION = ("sine", "ripple", "bump")  # the regression sets here (nnlab.data.describe reads this)


def _regression(
    f,
    dims: int,
    n_train: int,
    n_test: int,
    noise: float,
    outliers: float,
    outlier_scale: float,
    seed: int,
    scale: float,
    offset: float,
    low: float = -3.0,
    high: float = 3.0,
    multiplicative: bool = False,
    target_scale: float = 1.0,
    target_offset: float = 0.0,
):
    g = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(n_train + n_test, dims, generator=g)
    clean = f(x)
    eps = noise * torch.randn(len(x), generator=g)
    y = clean * torch.exp(eps) if multiplicative else clean + eps  # multiplicative noise keeps targets positive
    k = int(round(outliers * n_train))
    bad = torch.randperm(n_train, generator=g)[:k]
    y[bad] += outlier_scale * (1 + torch.rand(k, generator=g))
    x = (x * scale + offset).float()
    y = (y * target_scale + target_offset).float().unsqueeze(1)  # a large-magnitude target: data.target_scaling
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def sine(
    n_train: int = 500,
    n_test: int = 1000,
    noise: float = 0.1,
    outliers: float = 0.0,
    outlier_scale: float = 5.0,
    seed: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
    target_scale: float = 1.0,
    target_offset: float = 0.0,
):
    """1-D: y = sin(x) + 0.1 x^2 - 0.5 + noise, x uniform in [-3, 3]."""
    f = lambda x: torch.sin(x[:, 0]) + 0.1 * x[:, 0] ** 2 - 0.5  # noqa: E731
    return _regression(
        f,
        1,
        n_train,
        n_test,
        noise,
        outliers,
        outlier_scale,
        seed,
        scale,
        offset,
        target_scale=target_scale,
        target_offset=target_offset,
    )


def ripple(
    n_train: int = 1000,
    n_test: int = 1000,
    noise: float = 0.1,
    outliers: float = 0.0,
    outlier_scale: float = 5.0,
    seed: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
    target_scale: float = 1.0,
    target_offset: float = 0.0,
):
    """2-D: y = sin(x1) cos(x2) + 0.1 x1 + noise, (x1, x2) uniform in [-3, 3]^2."""
    f = lambda x: torch.sin(x[:, 0]) * torch.cos(x[:, 1]) + 0.1 * x[:, 0]  # noqa: E731
    return _regression(
        f,
        2,
        n_train,
        n_test,
        noise,
        outliers,
        outlier_scale,
        seed,
        scale,
        offset,
        target_scale=target_scale,
        target_offset=target_offset,
    )


def bump(
    n_train: int = 500,
    n_test: int = 1000,
    noise: float = 0.1,
    outliers: float = 0.0,
    outlier_scale: float = 5.0,
    seed: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
    target_scale: float = 1.0,
    target_offset: float = 0.0,
):
    """1-D, positive targets: y = (2 exp(-x^2) + 0.02) * exp(noise), x uniform in [-3, 3]: near zero on the
    flanks, where a linear output can go negative and a softplus output (loss.output=softplus) cannot."""
    f = lambda x: 2 * torch.exp(-(x[:, 0] ** 2)) + 0.02  # noqa: E731
    return _regression(
        f,
        1,
        n_train,
        n_test,
        noise,
        outliers,
        outlier_scale,
        seed,
        scale,
        offset,
        multiplicative=True,
        target_scale=target_scale,
        target_offset=target_offset,
    )
