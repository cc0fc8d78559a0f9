"""Turn raw tensors into the run's data: validation split, subset, preprocessing (statistics from the
training split only), all moved once to the training device; batches are index tensors. A stack's
runs keep image sets uint8, in one tensor per process and device that they share (Images: normalized as
a batch is read); a run alone, and every toy set, keeps a normalized float copy of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from nnlab.config.schema import PROJECTIONS

Tensor = torch.Tensor


class Images:
    """A split's images as rows of the data set's uint8 tensor (shared: the runs of a stack that load the
    same files hold one copy, not one each), read as floats normalized with the run's statistics: x[i],
    for a slice or an index tensor (a batch, an evaluation chunk, the probe), computes what a normalized
    float copy would hold there, element for element."""

    def __init__(self, raw: Tensor, index: Tensor | None, mean: Tensor, std: Tensor):
        self.raw, self.index, self.mean, self.std = raw, index, mean, std
        self.channels_last = False  # conv nets: batches in NHWC memory layout (setup)

    def __getitem__(self, i) -> Tensor:
        rows = self.raw[i] if self.index is None else self.raw[self.index[i]]
        x = rows.float().div_(255).sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __len__(self) -> int:
        return len(self.raw) if self.index is None else len(self.index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.raw.shape[1:]))

    @property
    def device(self) -> torch.device:
        return self.raw.device

    @property
    def is_cuda(self) -> bool:
        return self.raw.is_cuda


@dataclass
class Split:
    x: Tensor | Images  # examples: x[i] for a slice or an index tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Data:
    train: Split
    val: Split | None
    test: Split
    num_classes: int
    kind: str  # "points" | "images" | "regression" (float targets; num_classes: the number of targets)
    mean: Tensor  # preprocessing statistics, shaped to broadcast over a batch
    std: Tensor
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None
    projection: tuple[Tensor, Tensor] | None = None  # data.preprocess=pca or whiten: (W [features, k], b [k])
    raw_shape: tuple[int, ...] = ()  # one example as the data set holds it (before a projection)
    unlabeled: Tensor | Images | None = None  # training examples after data.subset, their labels unused

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def normalize(self, x: Tensor) -> Tensor:
        """Raw examples (e.g. another draw of the test set) as this run's model sees them: floats (images
        in [0, 1]) preprocessed with this run's training statistics, on its device."""
        return project(_to_float(x.to(self.mean.device)).sub_(self.mean).div_(self.std), self.projection)

    def unproject(self, x: Tensor) -> Tensor:
        """Preprocessed examples back in the raw space's shape, as near as the kept components allow (the
        misclassified images of a PCA run)."""
        if self.projection is None:
            return x * self.std + self.mean
        w, b = self.projection
        return ((x + b) @ torch.linalg.pinv(w)).view(len(x), *self.raw_shape) * self.std + self.mean


def prepare(
    raw: tuple[Tensor, Tensor, Tensor, Tensor],
    *,
    kind: str,
    num_classes: int,
    val_fraction: float,
    preprocess: str,
    subset: int | None,
    augment: Callable | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    shared: bool = False,
    components: int | None = None,
    unlabeled: int = 0,
) -> Data:
    """`shared`: a run of a stack: image sets as Images (rows of the one uint8 tensor the stack shares,
    normalized as read: the same numbers as the float copy a run alone keeps, which reads faster).
    `components`: how many principal components pca and whiten keep (None: all). `unlabeled`: how many
    training examples after the first `subset` to keep without their labels (pretrain.unlabeled)."""
    x_train, y_train, x_test, y_test = raw
    perm = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * len(y_train)))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    projection = None
    if shared and x_train.dtype == torch.uint8 and preprocess not in PROJECTIONS:  # images in a stack: shared rows
        mean, std = statistics(_to_float(x_train[train_idx]), preprocess)  # (a float copy for this moment only)
        mean, std = mean.to(device), std.to(device)
        raw_train, raw_test = on_device(x_train, device), on_device(x_test, device)

        def images(index: Tensor | None, raw=raw_train) -> Tensor | Images:
            return Images(raw, None if index is None else index.to(device), mean, std)

        train = Split(images(train_idx[:subset]), y_train[train_idx[:subset]].to(device))  # the first `subset`
        extra = images(train_idx[subset : subset + unlabeled]) if subset is not None and unlabeled else None
        val = Split(images(val_idx), y_train[val_idx].to(device)) if n_val else None
        test = Split(images(None, raw_test), y_test.to(device))
    else:
        train = Split(_to_float(x_train[train_idx]), y_train[train_idx])  # index first: copies of the data
        val = Split(_to_float(x_train[val_idx]), y_train[val_idx]) if n_val else None
        mean, std = statistics(train.x, preprocess)
        projection = principal_components(train.x.sub(mean).div(std), preprocess, components)
        extra = None
        if subset is not None:
            if unlabeled:
                extra = project(train.x[subset : subset + unlabeled].sub(mean).div_(std), projection).to(device)
            train = Split(train.x[:subset].clone(), train.y[:subset])

        def ready(s: Split) -> Split:  # normalized in place, then moved once to the device
            return Split(project(s.x.sub_(mean).div_(std), projection).to(device).contiguous(), s.y.to(device))

        train, val, test = (
            ready(train),
            ready(val) if val is not None else None,
            ready(Split(_to_float(x_test), y_test)),
        )
        mean, std = mean.to(device), std.to(device)
        if projection is not None:
            projection = (projection[0].to(device), projection[1].to(device))
    return Data(
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        kind=kind,
        mean=mean,
        std=std,
        augment=augment,
        projection=projection,
        raw_shape=tuple(x_train.shape[1:]),
        unlabeled=extra if extra is None or len(extra) else None,
    )


_ON_DEVICE: dict[tuple[int, str], tuple[Tensor, Tensor]] = {}


def on_device(x: Tensor, device) -> Tensor:
    """`x` on `device`, moved once per process: the runs of a stack that load the same data set (one
    tensor: setup keeps it) share one copy there too."""
    key = (id(x), str(torch.device(device)))
    if key not in _ON_DEVICE or _ON_DEVICE[key][0] is not x:
        _ON_DEVICE.clear()  # one data set at a time: a sweep's next stack may load another
        _ON_DEVICE[key] = (x, x.to(device))
    return _ON_DEVICE[key][1]


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
    if preprocess in ("center", *PROJECTIONS):  # pca, whiten: centred, then projected (principal_components)
        return mean, torch.ones_like(std)
    return mean, std


def principal_components(x: Tensor, preprocess: str, k: int | None) -> tuple[Tensor, Tensor] | None:
    """pca: the top-k eigenvectors W of the centred training features' covariance (each example, flattened,
    becomes its k coordinates along them, decorrelated); whiten: W's columns over the square root of their
    eigenvalues (each coordinate of unit variance too). With b, the mean's coordinates: z = x @ W - b.
    None for the other preprocess values."""
    if preprocess not in PROJECTIONS:
        return None
    flat = x.flatten(1).double()
    mu = flat.mean(0)
    centred = flat - mu
    values, vectors = torch.linalg.eigh(centred.T @ centred / max(1, len(flat) - 1))
    order = values.argsort(descending=True)[: k or len(values)]
    w = vectors[:, order]
    if preprocess == "whiten":
        w = w / values[order].clamp_min(1e-5 * values.max().clamp_min(1e-12)).sqrt()
    return w.float(), (mu @ w).float()


def project(x: Tensor, projection: tuple[Tensor, Tensor] | None) -> Tensor:
    """Examples as the model takes them after a pca or whiten projection (flattened: an MLP's input)."""
    if projection is None:
        return x
    w, b = projection
    return x.flatten(1) @ w - b


def batch_indices(n: int, batch_size: int, g: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    """A fresh permutation each call, cut into batches (a last batch of one example after larger ones is
    dropped: batch norm cannot train on it; batch_size=1, online learning, keeps every example)."""
    perm = torch.randperm(n, generator=g).to(device, non_blocking=True)
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        if len(idx) > 1 or batch_size == 1 or n == 1:
            yield idx


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and n == 1) else 0)
