"""MNIST and CIFAR-10 as uint8 tensors (N, C, H, W) with int64 labels.

Both are fetched with torchvision's own download code (download=True) into a data root. Offline, a root
that already holds the files is used as it is: ROOT/MNIST/raw/*-ubyte and ROOT/cifar-10-batches-py/.
"""

from __future__ import annotations

import codecs
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from nnlab.errors import ConfigError, unwritable
from nnlab.run_files.folder import first_missing, remove_made

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def data_root(root: str | None) -> Path:
    """data.source.root, else $NNLAB_DATA_DIR, else the per-user cache (~/.cache/nnlab/data)."""
    if root:
        return Path(root).expanduser()
    if os.environ.get("NNLAB_DATA_DIR"):
        return Path(os.environ["NNLAB_DATA_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "nnlab" / "data"


def _not_found(name: str, folder: Path, files: tuple[str, ...], error: Exception | str) -> ConfigError:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    why = " ... ".join(dict.fromkeys([lines[0], lines[-1]])) if lines else type(error).__name__
    return ConfigError(
        f"{name} is not in {folder} and could not be downloaded ({why}). Put the files "
        f"{', '.join(files)} in {folder} (an existing copy can be linked there), or point "
        "data.source.root or the NNLAB_DATA_DIR environment variable at a folder that holds "
        f"{folder.relative_to(folder.parent.parent)}."
    )


def _writable(name: str, base: Path, folder: Path, files: tuple[str, ...]) -> None:
    """Before a download: the data root must be a folder we can create and write."""
    problem = unwritable(base)
    if problem:
        raise ConfigError(
            f"{name} is not in {folder} and cannot be downloaded there: {problem}. Point data.source.root "
            f"or NNLAB_DATA_DIR at a writable folder, or put the files {', '.join(files)} in {folder}."
        )


def keep(data: tuple, classes) -> tuple:
    """Only the examples of `classes` (original labels), relabelled 0..k-1 in the order given: e.g.
    [5,6,7,8,9] makes a 5-class task of the upper digits (transfer learning from [0,1,2,3,4])."""
    if not classes:
        return data
    classes = [int(c) for c in classes]
    out = []
    for x, y in (data[:2], data[2:]):
        mask = torch.isin(y, torch.tensor(classes))
        relabel = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
        relabel[torch.tensor(classes)] = torch.arange(len(classes))
        out += [x[mask], relabel[y[mask]]]
    return tuple(out)


def mnist(root: str | None = None, download: bool = True, keep_classes: list[int] | None = None):
    """(x_train, y_train, x_test, y_test) of MNIST: 60k + 10k images of 1x28x28 (only `keep_classes`,
    relabelled 0..k-1, when given)."""
    from torchvision.datasets import MNIST

    base = data_root(root)
    folder = base / "MNIST" / "raw"
    have = all((folder / f).exists() for f in MNIST_FILES)
    if have:
        for name in MNIST_FILES:
            _check_idx(folder / name)
    elif download:
        _writable("MNIST", base, folder, MNIST_FILES)
    out, made = [], first_missing(folder)
    for train in (True, False):
        try:
            ds = MNIST(str(base), train=train, download=download and not have)
        except Exception as e:  # no network, not writable, not found
            remove_made(made)  # the empty folders a failed download made
            raise _not_found("MNIST", folder, MNIST_FILES, e) from None
        out += [ds.data.unsqueeze(1), ds.targets.long()]
    return keep(whole("MNIST", folder, tuple(out)), keep_classes)


def whole(name: str, folder: Path, data: tuple, classes: int = 10) -> tuple:
    """The data set as read, once each split has as many labels as images and every label is a class
    (0..classes-1): a data file that disagrees with itself is refused (ConfigError), never trained on in part."""
    for split, (x, y) in (("training", data[:2]), ("test", data[2:])):
        problem = (
            f"{len(x)} images but {len(y)} labels"
            if len(x) != len(y)
            else "no images"
            if len(x) == 0
            else f"a label {int(y[(y < 0) | (y >= classes)][0])} outside 0..{classes - 1}"
            if ((y < 0) | (y >= classes)).any()
            else None
        )
        if problem:
            raise ConfigError(
                f"the {name} {split} files in {folder} hold {problem}: damaged or not {name}'s. Replace them "
                f"with intact copies (or delete them so that they are downloaded again)."
            )
    return data


def _check_idx(path: Path) -> None:
    """An IDX file (MNIST's format) is whole: its size matches the counts in its header."""

    size = path.stat().st_size
    with open(path, "rb") as f:
        header = f.read(16)
    ok = len(header) >= 8
    if ok:
        magic, count = struct.unpack(">II", header[:8])
        if magic == 2049:  # labels: 8-byte header, one byte per label
            ok = size == 8 + count
        elif magic == 2051 and len(header) == 16:  # images: 16-byte header, rows x cols bytes each
            rows, cols = struct.unpack(">II", header[8:16])
            ok = size == 16 + count * rows * cols
        else:
            ok = False
    if not ok:
        raise ConfigError(
            f"{path} is truncated or corrupt (its size does not match its IDX header). Delete it so that it "
            "is downloaded again (data.source.download=true), or replace it with an intact copy."
        )


def cifar10(root: str | None = None, download: bool = True, keep_classes: list[int] | None = None):
    """(x_train, y_train, x_test, y_test) of CIFAR-10: 50k + 10k images of 3x32x32 (only `keep_classes`,
    relabelled 0..k-1, when given)."""
    base = data_root(root)
    folder = base / "cifar-10-batches-py"
    if download and not all((folder / f).exists() for f in CIFAR10_FILES):
        from torchvision.datasets import CIFAR10

        _writable("CIFAR-10", base, folder, CIFAR10_FILES)
        made = first_missing(folder)
        try:
            CIFAR10(str(base), train=True, download=True)
        except Exception as e:
            remove_made(made)
            raise _not_found("CIFAR-10", folder, CIFAR10_FILES, e) from None
    missing = [f for f in CIFAR10_FILES if not (folder / f).exists()]
    if missing:
        raise _not_found("CIFAR-10", folder, CIFAR10_FILES, f"missing {', '.join(missing)}; download=false")
    x_train, y_train = _read_cifar_batches(folder, CIFAR10_FILES[:-1])
    x_test, y_test = _read_cifar_batches(folder, CIFAR10_FILES[-1:])
    return keep(whole("CIFAR-10", folder, (x_train, y_train, x_test, y_test)), keep_classes)


class _CifarUnpickler(pickle.Unpickler):
    """The official batches are Python 2 pickles of a dict of numpy arrays, lists and strings. Only what
    those hold may be built: a file that names anything else (a function to call: os.system, eval, ...)
    is refused before it runs, whatever is in the data root."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(
                f"it asks to load {module}.{name}, which no CIFAR-10 batch holds (refused unread)"
            )
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, wherever this numpy keeps it
        if module == "_codecs":
            return codecs.encode
        return getattr(np, name)


def _read_cifar_batches(folder: Path, names: tuple[str, ...]):
    xs, ys = [], []
    for name in names:
        try:
            with open(folder / name, "rb") as f:
                batch = _CifarUnpickler(f, encoding="latin1").load()  # the official files are Python 2 pickles
            if not isinstance(batch, dict):
                raise ValueError(f"it holds a {type(batch).__name__}, not a batch dict")
            data = torch.from_numpy(np.ascontiguousarray(batch["data"], dtype=np.uint8))
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(torch.as_tensor(batch["labels"], dtype=torch.long))
        except Exception as e:
            raise ConfigError(
                f"{folder / name} is not a valid CIFAR-10 batch file ({type(e).__name__}: {e}). Delete the "
                f"folder {folder} so that it is downloaded again, or replace the file with an intact copy."
            ) from None
    return torch.cat(xs), torch.cat(ys)
