"""A run folder as one process's property: a lock that a killed process cannot leave behind (an flock,
released by the kernel with the process), rows that survive a torn append, no leftovers (temporary
files of interrupted saves; the half-made folder of a run that stopped on a user error before training),
and no write through a symbolic link: whole files are replaced atomically (write_file: a link in the
way is replaced, its target untouched), appends refuse a link (open_append), and a folder holding links
is refused before anything is written (refuse_links).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from nnlab.errors import ConfigError, FolderInUse
from nnlab.run_files.records import read_rows, read_summary

LOCK = ".lock"


class Lock:
    """Hold RUN/.lock while a process writes into RUN. A second process is refused with a clear error;
    a process killed with -9 leaves nothing held (the kernel drops an flock with its last descriptor). The
    last holder removes the file as it lets go (while still holding it), so a finished run keeps no .lock;
    a process that locked the removed file in that moment sees it is no longer the folder's and takes the
    new one."""

    def __init__(self, run_dir: str | Path, wait: float = 0.0):
        """wait: seconds to keep trying while another process holds it (0: refused at once)."""
        self.path = Path(run_dir) / LOCK
        self.wait = wait
        self.fd: int | None = None

    def __enter__(self) -> Lock:
        key = str(self.path.absolute())
        if key in _CLAIMED:  # this process claimed it (the pre-flight, before Hydra made the job): the job's own
            _CLAIMED[key][1] += 1
            self.fd = _CLAIMED[key][0]
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError:
                if self.path.is_symlink():
                    raise ConfigError(link_message(self.path)) from None
                raise
            try:
                _flock_until(fd, deadline)
            except BlockingIOError:
                os.close(fd)
                raise FolderInUse(busy_message(self.path.parent)) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its last holder removed it as it let go: the folder's lock is a new file
        else:
            raise FolderInUse(busy_message(self.path.parent))
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        held = _CLAIMED.get(str(self.path.absolute()))
        if held is not None and held[0] == self.fd:
            held[1] -= 1
            if held[1] > 0:
                self.fd = None
                return
            del _CLAIMED[str(self.path.absolute())]
        try:
            os.unlink(self.path)  # still held: a process that opened it meanwhile sees it gone (_same_file)
        except OSError:
            pass
        os.close(self.fd)  # releases the lock
        self.fd = None


def _flock_until(fd: int, deadline: float) -> None:
    """An exclusive flock on `fd`, tried again until `deadline` (time.monotonic()); BlockingIOError after it."""

    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return False


_CLAIMED: dict[str, list] = {}  # lock path -> [descriptor, holders]: folders claim() took for this process


def claim(folder: str | Path, fresh_name: bool = False) -> tuple[Path, Path | None, Lock]:
    """Take `folder` for this process before anything is written into it: create what is missing and
    hold its lock. Returns (the folder, the outermost folder this call created (None: it existed), the
    held Lock). With `fresh_name` (a default, time-stamped name), a folder that exists already, because
    another command started in the same second, is not shared: `NAME_2`, `NAME_3`, ... is taken instead,
    each created with one atomic mkdir so that two processes can never both believe a name is theirs.
    A folder another process holds raises FolderInUse; nothing is removed or changed then."""
    folder = Path(folder)
    made = first_missing(folder)
    if fresh_name:
        folder.parent.mkdir(parents=True, exist_ok=True)
        base, n = folder, 1
        while True:
            try:
                os.mkdir(folder)
                break
            except FileExistsError:
                n += 1
                folder = base.with_name(f"{base.name}_{n}")
        made = made if made is not None and made != base else folder
    else:
        folder.mkdir(parents=True, exist_ok=True)
    lock = Lock(folder)
    lock.__enter__()  # refused (FolderInUse): nothing is removed, the folder may be the holder's
    _CLAIMED[str(lock.path.absolute())] = [lock.fd, 1]
    return folder, made, lock


def holds_run(folder: str | Path) -> str | None:
    """What of a run `folder` holds ("a finished run", "a run that did not finish"), or None where it holds
    none (Hydra's .hydra/ and a train.log alone are not a run)."""
    folder = Path(folder)
    status = (read_summary(folder) or {}).get("status")
    if status == "ok":
        return "a finished run"
    if status is not None or (folder / "checkpoints").is_dir() or (folder / "metrics.jsonl").is_file():
        return "a run that did not finish" + (f" (status {status})" if status else "")
    return None


def check_start(run_dir: str | Path, resume: str | None, overwrite: bool) -> None:
    """Under the run folder's lock, before a job writes: no symbolic link in it, and no earlier run that
    this job neither continues (resume) nor replaces (overwrite) (ConfigError)."""
    refuse_links(run_dir)
    what = holds_run(run_dir)
    if what is not None and resume is None and not overwrite:
        raise ConfigError(
            f"{run_dir} holds {what}: nnlab does not replace it silently. To continue it: resume={run_dir}; "
            "to start again: a new folder; to replace it: overwrite=true."
        )


def runs_under(folder: str | Path) -> int:
    """How many run folders (a summary.json or a checkpoints/ in them) lie below `folder`."""
    folder = Path(folder)
    runs = {p.parent for p in folder.rglob("summary.json")} | {
        p.parent for p in folder.rglob("checkpoints") if p.is_dir()
    }
    return len({r for r in runs if r != folder})


# What nnlab (and Hydra for it) writes into a run folder: the only names overwrite=true removes there
RUN_FILES = (
    ".hydra",
    "checkpoints",
    "config.yaml",
    "environment.json",
    "metrics.jsonl",
    "summary.json",
    "train.log",
    "error.txt",
    "events.out.tfevents.*",
    ".*.tmp-*",
    "curves.png",
    "decision_boundary.png",
    "confusion_matrix.png",
    "misclassified.png",
    "activations_init.png",
    "activations_final.png",
    "check.json",
    "lr_find.json",
    "lr_find.png",
    "batch_size_find.json",
)


def replace_runs(folder: str | Path, sweep: bool) -> list[Path]:
    """overwrite=true, nnlab's one deletion rule: remove what it can prove it made and nothing else. In a run
    folder, the files a run writes (RUN_FILES); in a sweep's, the files a sweep writes at its top
    (SWEEP_FILES) and, in every run below it (holds_run), its RUN_FILES, then the folders that leaves
    empty. A file of anyone else's, beside the runs or inside one, stays where it is. Returns what went."""
    folder = Path(folder)
    runs = (
        [folder]
        if not sweep
        else sorted(
            {
                p.parent
                for p in folder.rglob("*")
                if p.name in ("summary.json", "checkpoints")
                and holds_run(p.parent)
                and not _linked_below(folder, p.parent)
            },
            reverse=True,
        )
    )
    gone = []
    for names, where in ([(SWEEP_FILES, folder)] if sweep else []) + [(RUN_FILES, r) for r in runs]:
        for name in names:
            for path in where.glob(name):
                if path.name == LOCK:
                    continue
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                gone.append(path)
    for run in runs:  # a sweep's job folders that held nothing else (and their parents below the sweep's folder)
        while run != folder and run.is_dir() and not any(run.iterdir()):
            run.rmdir()
            run = run.parent
    return gone


def _linked_below(top: Path, path: Path) -> bool:
    """Whether `path` is reached through a symbolic link below `top` (a user's link: never followed to delete)."""
    return any(p.is_symlink() for p in [path, *path.parents] if p != top and top in p.parents)


def never_output(folder: str | Path) -> str | None:
    """Why `folder` may never be a run's or a sweep's output folder (the working directory, a folder above
    it, the home folder, `/`), else None."""
    where, here = Path(os.path.abspath(folder)), Path.cwd()
    if where == here:
        return "the working directory itself"
    if where in here.parents:
        return "a folder above the working directory"
    if where == Path(where.anchor):
        return "the root of the file system"
    try:
        home = Path.home().absolute()
    except RuntimeError:  # no HOME and no user entry
        return None
    return "the home folder" if where == home else None


def link_message(path: Path) -> str:
    return (
        f"{path} is a symbolic link: nnlab writes nothing through links in a run or sweep folder (a crafted "
        "folder could point them at any file). Remove the link, or choose another folder with hydra.run.dir=PATH."
    )


def refuse_link(path: str | Path) -> None:
    """ConfigError where `path` itself is a symbolic link: a folder nnlab makes or replaces beside the runs
    (a sweep's mean/, a folder's overview/, ensemble/), which a link would send anywhere."""
    if Path(path).is_symlink():
        raise ConfigError(link_message(Path(path)))


# What a sweep writes at the top of its folder (its jobs write into folders of their own)
SWEEP_FILES = (
    LOCK,
    "multirun.yaml",
    "report.csv",
    "report.md",
    "report.png",
    "report_settings.csv",
    "decision_boundaries.png",
    "overview",
    "mean",
    "ensemble.json",
    "ensemble",
    ".submitit",
    "doctor.md",
)


def refuse_links(folder: str | Path, sweep: bool = False) -> None:
    """ConfigError naming the first symbolic link inside `folder` (the folder itself may be one). A sweep's
    folder may be a working directory with links of the user's own at its top (`pre -> ../pretrained`, for
    transfer.init_from=pre): there only the names a sweep writes (SWEEP_FILES) are refused as links, and
    every link below (in job folders) is. (A job folder climbing out of the sweep: command_line refuses its value.)"""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(root) / name
            if path.is_symlink() and not (sweep and Path(root) == folder and name not in SWEEP_FILES):
                raise ConfigError(link_message(path))


def write_file(path: str | Path, data: str | bytes) -> Path:
    """Write a whole file atomically: a temporary file beside it, then renamed over it. A symbolic link at
    `path` is replaced (its target is never written), and a failed write (a full disk) leaves the old file
    and no half-written or empty one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = data.encode() if isinstance(data, str) else data  # (bytes, or a buffer: a checkpoint's)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    return path


def open_append(path: str | Path):
    """A text file opened for appending, line-buffered, never through a symbolic link (ConfigError), nor
    into a file with other names (a hard link: it is replaced by a copy of its own first)."""
    path = Path(path)
    try:
        if not path.is_symlink() and path.is_file() and path.stat().st_nlink > 1:
            # a hard link: its other names keep the old bytes
            write_file(path, path.read_bytes())
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError:
        if path.is_symlink():
            raise ConfigError(link_message(path)) from None
        raise
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8")


def holder(run_dir: str | Path) -> str | None:
    """The pid (as written) of a live process holding RUN's lock, else None. Takes nothing."""

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
    return (
        f"{run_dir} is in use by another nnlab process{f' (pid {pid})' if pid else ''}: two runs in one folder "
        "would mix their rows and files. Wait for it to finish, or choose another folder with hydra.run.dir=PATH."
    )


def keep_rows(path: str | Path, keep) -> None:
    """Rewrite metrics.jsonl with the whole rows for which keep(row) is true (atomically)."""
    path = Path(path)
    rows = [r for r in read_rows(path) if keep(r)]
    write_file(path, "".join(json.dumps(r) + "\n" for r in rows))


def remove_leftovers(run_dir: str | Path) -> list[Path]:
    """Temporary files of saves that a kill interrupted (checkpoints/.last.pt.tmp-PID, ...)."""
    gone = []
    for pattern in ("checkpoints/.*.tmp-*", ".*.tmp-*", "*.json.tmp", "metrics.jsonl.tmp"):
        for path in Path(run_dir).glob(pattern):
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def first_missing(path: str | Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (what creating it would create), or None."""
    path = Path(path).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def remove_made(folder: Path | None, keep_files: bool = True) -> None:
    """Remove `folder` (made by this process: see first_missing) after an error found before training (or a
    signal before its first step); with keep_files, only while it holds nothing but folders, bookkeeping
    (Hydra's, the start's files, TensorBoard's start texts: no step was logged yet) and empty files."""
    if folder is None or not folder.is_dir():
        return
    if keep_files:
        bookkeeping = {".hydra", "train.log", "config.yaml", "environment.json", LOCK}
        for path in folder.rglob("*"):
            if (
                path.is_file()
                and path.stat().st_size > 0
                and not ({*path.relative_to(folder).parts} & bookkeeping)
                and not path.name.startswith("events.out.tfevents.")
            ):
                return
    shutil.rmtree(folder, ignore_errors=True)


UNNAMED = ("trainer.progress", "resume", "overwrite", "data.source.root")  # settings that do not make a run what it is


def named_after(args: list[str], longest: int = 120) -> str:
    """What a single run sets on the command line, for its default folder's name after the time
    (`2026-11-28_15-06-46_activation=tanh,optimizer=sgd`): its overrides but Hydra's own, UNNAMED and paths
    (a data folder), a list written as the shell leaves it alone (`model.hidden=256-128`, not a glob's
    `[256,128]`), whole settings up to `longest` characters and then how many more (`,+2`); "" where it
    sets nothing."""
    parts = [a.lstrip("+~") for a in args if "=" in a and not a.startswith("-")]
    parts = [
        p.replace("'", "").replace('"', "").replace("\\", "").replace("$", "")
        for p in parts
        if not p.startswith("hydra") and p.split("=", 1)[0] not in UNNAMED and "/" not in p.split("=", 1)[1]
    ]
    settings = dict(p.split("=", 1) for p in parts)  # a key given twice: the last
    named = [f"{k}={v.strip('[]()').replace(',', '-').replace(' ', '')}" for k, v in settings.items()]
    name = ""
    for i, part in enumerate(named):
        more = f",+{len(named) - i}"
        if len(name) + len(part) + 1 + (len(more) if i < len(named) - 1 else 0) > longest:
            return name + more if name else part[:longest]
        name = f"{name},{part}" if name else part
    return name


def claim_output(folder: str, key: str, fresh: bool, overwrite: bool, multirun: bool, continuing: bool):
    """Take a command's output folder (`key`: hydra.run.dir, or hydra.sweep.dir with -m) for this process
    (claim(): created where missing, its lock held until the process ends) and refuse, before Hydra writes anything, a folder that would mix or lose runs:
    the working directory itself; one holding symbolic links; a finished or unfinished run (or, with -m,
    an earlier sweep's runs) that this command does not continue (resume=) or replace (overwrite=true);
    a sweep nested inside a single run. A default, time-stamped name that exists already (a command
    started in the same second) becomes NAME_2. Refused: nothing of anyone's changes. Returns (the folder,
    the outermost folder this call created or None, the held Lock)."""
    path = Path(folder)
    why = never_output(folder if str(folder).strip() else ".")
    if why:
        raise ConfigError(
            f"{key}={folder!r} would put the {'sweep' if multirun else 'run'} into {why}, among your "
            f"own files: nnlab never writes (nor, with overwrite=true, deletes) there. Name a folder of "
            f"its own, e.g. {key}=outputs/my_{'sweep' if multirun else 'run'}."
        )
    refuse_links(path, sweep=multirun)
    claimed, made, lock = claim(path, fresh_name=fresh)
    try:
        what = holds_run(claimed)
        if multirun and what is not None:
            raise ConfigError(
                f"{claimed} is a single run's folder ({what}): a sweep would nest its runs inside it. "
                f"Choose another folder with {key}=PATH."
            )
        if not multirun and (claimed / "multirun.yaml").is_file():
            raise ConfigError(
                f"{claimed} is a sweep's folder: a run there would sit among its jobs and the sweep could "
                f"not be continued. Choose another folder with {key}=PATH (a job of the sweep continues "
                f"with resume=JOB_FOLDER)."
            )
        if not continuing and not overwrite:
            n = runs_under(claimed) if multirun else 0
            if what is not None or n:
                held = what if what is not None else f"{n} run{'s' if n > 1 else ''} of an earlier sweep"
                again = (
                    "the same command with resume=auto (finished runs are kept, the others continue)"
                    if multirun
                    else f"resume={claimed}"
                )
                raise ConfigError(
                    f"{claimed} holds {held}: nnlab does not replace it silently. To continue it: "
                    f"{again}; to start again: a new folder ({key}=PATH); to replace it: overwrite=true."
                )
        if overwrite and not continuing:
            replace_runs(claimed, sweep=multirun)
    except BaseException:
        lock.__exit__()
        raise
    return claimed, made, lock
