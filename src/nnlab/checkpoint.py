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


class SaveError(RuntimeError):
    """A checkpoint could not be written (full disk, quota, read-only or missing folder). The file it
    would have replaced is untouched."""


def save(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a failed write as RuntimeError
        kept = "the previous checkpoint there is intact" if path.exists() else "no earlier checkpoint was there"
        raise SaveError(
            f"could not write the checkpoint {path} ({_reason(e, path.parent)}); {kept}. Free some space or "
            f"choose another output folder (hydra.run.dir=...), then continue with resume={path.parent.parent}."
        ) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return path


def keep_numbered(path: Path, epoch: int, keep: int) -> None:
    """Keep a copy of checkpoint `path` as epoch_NNNN.pt beside it (a hard link where the file system
    allows one), and delete all but the `keep` newest numbered copies."""
    if keep <= 0:
        return
    numbered = path.with_name(f"epoch_{epoch:04d}.pt")
    numbered.unlink(missing_ok=True)
    try:
        os.link(path, numbered)
    except OSError:
        import shutil

        try:
            shutil.copyfile(path, numbered)
        except OSError as e:
            numbered.unlink(missing_ok=True)
            raise SaveError(f"could not write the checkpoint {numbered} ({_reason(e, path.parent)}).") from None
    for old in sorted(path.parent.glob("epoch_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)


def _reason(e: Exception, folder: Path) -> str:
    import errno
    import shutil

    if isinstance(e, OSError):
        reason = e.strerror or str(e)
    else:  # torch's writer hides the errno
        reason = f"the write failed part-way, as on a full disk, over a quota or a file-size limit; torch: {str(e).strip()[:100]}"
    if not isinstance(e, OSError) or e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        try:
            reason += f"; {shutil.disk_usage(folder).free / 2**20:.0f} MiB free on that disk"
        except OSError:
            pass
    return reason


def of_run(source: str | Path) -> Path:
    """A run directory's best checkpoint, else its last; a checkpoint file as it is."""
    path = Path(source).expanduser()
    if path.is_dir():
        best = path / "checkpoints" / "best.pt"
        path = best if best.exists() else path / "checkpoints" / "last.pt"
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
