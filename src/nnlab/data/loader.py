"""Turn raw tensors into the run's data: validation split, subset, preprocessing (statistics from the
training split only), all moved once to the training device; batches are index tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

Tensor = torch.Tensor


@dataclass
class Split:
    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Data:
    train: Split
    val: Optional[Split]
    test: Split
    num_classes: int
    kind: str  # "points" | "images" | "regression" (float targets; num_classes: the number of targets)
    mean: Tensor  # preprocessing statistics, shaped to broadcast over a batch
    std: Tensor
    augment: Optional[Callable[[Tensor, torch.Generator], Tensor]] = None

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def normalize(self, x: Tensor) -> Tensor:
        """Raw examples (e.g. another draw of the test set) as this run's model sees them: floats (images
        in [0, 1]) preprocessed with this run's training statistics, on its device."""
        return _to_float(x.to(self.mean.device)).sub_(self.mean).div_(self.std)


def prepare(
    raw: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    kind: str,
    num_classes: int,
    val_fraction: float,
    preprocess: str,
    subset: Optional[int],
    augment: Optional[Callable] = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Data:
    x_train, y_train, x_test, y_test = raw
    perm = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * len(y_train)))
    val_idx, train_idx = perm[:n_val], perm[n_val:]

    train = Split(_to_float(x_train[train_idx]), y_train[train_idx])  # index first: copies of the uint8 data
    val = Split(_to_float(x_train[val_idx]), y_train[val_idx]) if n_val else None
    mean, std = statistics(train.x, preprocess)
    if subset is not None:
        train = Split(train.x[:subset].clone(), train.y[:subset])

    def ready(s: Split) -> Split:  # normalized in place, then moved once to the device
        return Split(s.x.sub_(mean).div_(std).to(device).contiguous(), s.y.to(device))

    return Data(
        train=ready(train),
        val=ready(val) if val is not None else None,
        test=ready(Split(_to_float(x_test), y_test)),
        num_classes=num_classes,
        kind=kind,
        mean=mean.to(device),
        std=std.to(device),
        augment=augment,
    )


def _to_float(x: Tensor) -> Tensor:
    """A new float tensor; images: uint8 [0, 255] -> [0, 1]."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)


def statistics(x: Tensor, preprocess: str) -> tuple[Tensor, Tensor]:
    """Mean and std to subtract/divide by: per feature for points, per channel for images (N, C, H, W)."""
    dims = (0, 2, 3) if x.dim() == 4 else (0,)
    shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
    mean = x.mean(dims).view(shape)
    std = x.std(dims).clamp_min(1e-8).view(shape)
    if preprocess == "none":
        return torch.zeros_like(mean), torch.ones_like(std)
    if preprocess == "center":
        return mean, torch.ones_like(std)
    return mean, std


def batch_indices(n: int, batch_size: int, g: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    """A fresh permutation each call, cut into batches (a last batch of one example is dropped:
    batch norm cannot train on it)."""
    perm = torch.randperm(n, generator=g).to(device, non_blocking=True)
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        if len(idx) > 1 or n == 1:
            yield idx


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and n == 1) else 0)
