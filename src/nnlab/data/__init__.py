"""Data sets as tensors: toy 2-D classification and 1-D/2-D regression sets (toy.py), MNIST and CIFAR-10 (images.py), batching and
preprocessing on the training device (loader.py), batch-wise augmentation (augment.py)."""

from __future__ import annotations

import inspect
from typing import Any

# Images: (channels, height, width) and classes, known without reading a file.
IMAGE_SETS = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10)}


def describe(source: Any) -> tuple[str, int]:
    """("points" | "images", number of classes) of a data.source config, without loading it; for a
    regression set ("regression", number of targets)."""
    module, _, name = str(source["_target_"]).rpartition(".")
    if module == "nnlab.data.toy":
        from nnlab.data.toy import REGRESSION

        if name in REGRESSION:
            return "regression", 1
    if module == "nnlab.data.images" and name in IMAGE_SETS:
        kept = source.get("keep_classes")
        return "images", len(kept) if kept else IMAGE_SETS[name][1]
    classes = source.get("classes")
    if classes is None:
        from nnlab.config.targets import resolve_target

        fn = resolve_target(source["_target_"])

        param = inspect.signature(fn).parameters.get("classes") if fn else None
        classes = param.default if param is not None else 2
    return "points", int(classes)
