"""Checkpoints: plain tensors and Python types only (they load with torch.load(weights_only=True)),
written atomically so that a crash mid-write never replaces a good file with half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from nnlab.config import ConfigError

FORMAT = "nnlab-checkpoint"
VERSION = 1


def save(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ConfigError(f"{path} is not a readable nnlab checkpoint ({type(e).__name__}: {e}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an nnlab checkpoint (no '{FORMAT}' marker).")
    return state
