"""The two kinds of error a user meets, each reported as one paragraph at the CLI edge (never a
traceback): a mistake in what they asked for (ConfigError, exit 2), and a file that could not be
written (SaveError, exit 1). Plus the one check both share: can this folder be created and written?"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path


class ConfigError(ValueError):
    """A user error in the configuration or its inputs: reported as one paragraph, exit code 2."""


class FolderInUse(ConfigError):
    """A run folder that another live process is writing: nothing may be written into it."""


class SaveError(RuntimeError):
    """A file could not be written (full disk, quota, read-only or missing folder); the file it would
    have replaced is untouched. Reported as one paragraph, exit code 1."""


def unwritable(folder) -> str | None:
    """Why `folder` cannot be created and written (a name the file system refuses, its nearest existing
    ancestor a file or not writable, a file system that takes no new folders: /proc), or None when it
    can. Probes with a temporary folder that it removes at once: nothing is left behind."""

    try:
        existing = Path(folder).absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except OSError as e:  # a name too long for the file system
        return f"the file system refuses the name ({e.strerror or e})"
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable" + (" (a read-only file system)" if _read_only(existing) else "")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nnlab-probe-", dir=existing))
    except OSError as e:
        return f"{existing} takes no new folders ({e.strerror or e})"
    return None


def _read_only(path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def did_you_mean(word: str, choices: list[str], prefix: str = "") -> str:
    """` Did you mean PREFIX+CLOSEST?` for a misspelt name, or nothing."""

    same_but_case = [c for c in choices if c.lower() == word.lower()]  # `Relu` means relu, not elu
    close = same_but_case or difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {prefix}{close[0]}?" if close else ""
