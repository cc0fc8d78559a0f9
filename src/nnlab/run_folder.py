"""A run folder as one process's property: a lock that a killed process cannot leave behind (an flock,
released by the kernel with the process), rows that survive a torn append, and no leftovers (temporary
files of interrupted saves; the half-made folder of a run that stopped on a user error before training).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

from nnlab.errors import FolderInUse

LOCK = ".lock"


class Lock:
    """Hold RUN/.lock while a process writes into RUN. A second process is refused with a clear error;
    a process killed with -9 leaves nothing held (the kernel drops an flock with its last descriptor)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self.fd: Optional[int] = None

    def __enter__(self) -> "Lock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderInUse(busy_message(self.path.parent)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock; the file stays (removing it would race a waiting process)
            self.fd = None


def holder(run_dir: str | Path) -> Optional[str]:
    """The pid (as written) of a live process holding RUN's lock, else None. Takes nothing."""
    import fcntl

    path = Path(run_dir) / LOCK
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return path.read_text().strip() or "?"
    finally:
        os.close(fd)


def busy_message(run_dir: Path) -> str:
    pid = holder(run_dir)
    return (f"{run_dir} is in use by another nnlab process{f' (pid {pid})' if pid else ''}: two runs in one folder "
            "would mix their rows and files. Wait for it to finish, or choose another folder with hydra.run.dir=PATH.")


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a metrics.jsonl; a last line torn by a crash or a full disk (no newline, or not JSON)
    is left out, as is any line that is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").split("\n")[:-1]:  # the part after the last newline is torn
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def keep_rows(path: str | Path, keep) -> None:
    """Rewrite metrics.jsonl with the whole rows for which keep(row) is true (atomically)."""
    path = Path(path)
    rows = [r for r in read_rows(path) if keep(r)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def remove_leftovers(run_dir: str | Path) -> list[Path]:
    """Temporary files of saves that a kill interrupted (checkpoints/.last.pt.tmp-PID, ...)."""
    gone = []
    for pattern in ("checkpoints/.*.tmp-*", "*.json.tmp", "metrics.jsonl.tmp"):
        for path in Path(run_dir).glob(pattern):
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def first_missing(path: str | Path) -> Optional[Path]:
    """The outermost folder of `path` that does not exist yet (what creating it would create), or None."""
    path = Path(path).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def remove_made(folder: Optional[Path], keep_files: bool = True) -> None:
    """Remove `folder` (made by this process: see first_missing) after an error found before training;
    with keep_files, only while it holds nothing but folders, Hydra's bookkeeping and empty files."""
    if folder is None or not folder.is_dir():
        return
    if keep_files:
        bookkeeping = {".hydra", "train.log", "config.yaml", "environment.json", LOCK}
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size > 0 and not ({*path.relative_to(folder).parts} & bookkeeping):
                return
    shutil.rmtree(folder, ignore_errors=True)
