"""Checkpoints: plain tensors and Python types only (they load with torch.load(weights_only=True)),
written atomically so that a crash mid-write never replaces a good file with half of one; what a
checkpoint holds to continue a run exactly (state, restore), and which checkpoint `resume=` continues.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from nnlab.errors import ConfigError, SaveError

FORMAT = "nnlab-checkpoint"
VERSION = 1


def save(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (run_folder.write_file: readers see the old file or the new one)."""
    from nnlab.run_files.folder import write_file

    path = Path(path)
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, buffer.getbuffer())
    except OSError as e:
        kept = "the previous checkpoint there is intact" if path.exists() else "no earlier checkpoint was there"
        raise SaveError(
            f"could not write the checkpoint {path} ({_reason(e, path.parent)}); {kept}. Free some space or "
            f"choose another output folder (hydra.run.dir=...), then continue with resume={path.parent.parent}."
        ) from None
    return path


def same_as(path: Path, source: Path, state: dict[str, Any]) -> Path:
    """`path` holding what `source` (just saved from `state`) holds: a hard link put in place atomically,
    else (a file system without links) `state` saved again."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, path)
        return path
    except OSError:
        tmp.unlink(missing_ok=True)
        return save(path, state)


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
        try:
            shutil.copyfile(path, numbered)
        except OSError as e:
            numbered.unlink(missing_ok=True)
            raise SaveError(f"could not write the checkpoint {numbered} ({_reason(e, path.parent)}).") from None
    for old in sorted(path.parent.glob("epoch_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)


def _reason(e: OSError, folder: Path) -> str:

    reason = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
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
    except Exception as e:  # torch's text runs to paragraphs (its weights_only advice): said in a few words
        why = (
            "its contents are not plain tensors and numbers: a damaged file, or one that would run code if loaded "
            "(nnlab loads weights only)"
            if isinstance(e, pickle.UnpicklingError)
            else f"{type(e).__name__}: {next((line.strip() for line in str(e).splitlines() if line.strip()), '')[:160]}"
        )
        raise ConfigError(
            f"{path} is not a readable nnlab checkpoint ({why}). Give another run or checkpoint."
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"{path} is not an nnlab checkpoint (no '{FORMAT}' marker).")
    return state


def state(exp, loop, metrics: dict, monitor, diag, scaler, noise, kept: bool = False) -> dict:
    """Everything needed to continue exactly: weights, optimizer, schedule, scaler, the loop's position
    (loop_state.Position), the random states, early-stopping and diagnostics state, and the config. Tensors
    and plain types only. `kept`: held to be written later while training goes on (a light member's best),
    so every weight and optimizer tensor is a copy (else only a stack member's views are)."""

    import numpy as np

    from nnlab.nn import bare

    np_state = np.random.get_state()
    rng = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "noise": noise.get_state(),
    }
    return {
        "model": {k: _own(v, kept) for k, v in bare(exp.model).state_dict().items()},
        "optimizer": _own_optimizer(exp.optimizer.state_dict(), kept),
        "scheduler": exp.scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": loop.last_epoch,
        "step": loop.step,
        "position": loop.state_dict(),
        "rng": rng,
        "monitor": monitor.state_dict(),
        "diagnostics": diag.state_dict(),
        "metrics": metrics,
        "config": exp.config,
    }


def _own_optimizer(state: dict, kept: bool = False) -> dict:
    """An optimizer's state_dict whose tensors are their own (a stack's member holds views of the stacked
    optimizer state: optim.StackedOptimizer)."""
    return {
        **state,
        "state": {
            i: {k: _own(v, kept) if torch.is_tensor(v) else v for k, v in s.items()} for i, s in state["state"].items()
        },
    }


def _own(t: torch.Tensor, kept: bool = False) -> torch.Tensor:
    """A tensor that is a view into a larger one (a member's slice of a stacked sweep) as a copy of its
    own: torch.save would otherwise write the whole stack into this run's checkpoint (`kept`: a copy always)."""
    return t.clone() if kept or t.untyped_storage().nbytes() != t.numel() * t.element_size() else t


def check_fits(exp, state: dict, path: Path) -> None:
    """Refuse (ConfigError), before a resume writes anything, a checkpoint whose contents do not fit this
    run: the model's tensors by name and shape, and the loop position, optimizer and generator states by
    type (a damaged or edited file would otherwise fail half-way through the resume)."""
    from nnlab.nn import bare

    def problem() -> str | None:
        mine, theirs = bare(exp.model).state_dict(), state.get("model")
        if not isinstance(theirs, dict) or set(theirs) != set(mine):
            return "its model's layers are not this model's"
        shapes = [k for k, v in mine.items() if not torch.is_tensor(theirs[k]) or theirs[k].shape != v.shape]
        if shapes:
            return f"{shapes[0]} is {tuple(getattr(state['model'][shapes[0]], 'shape', ()))} there, {tuple(mine[shapes[0]].shape)} here"
        pos = state.get("position")
        whole = isinstance(pos, dict) and all(
            isinstance(pos.get(k), int) and not isinstance(pos.get(k), bool) and pos[k] >= 0
            for k in ("epoch", "batch", "step", "count")
        )
        if (
            not whole
            or pos["epoch"] < 1
            or not torch.is_tensor(pos.get("shuffle"))
            or not (pos.get("sums") is None or torch.is_tensor(pos["sums"]))
        ):
            return "its loop position is not one nnlab writes"
        if (
            not isinstance(state.get("optimizer"), dict)
            or not isinstance(state.get("rng"), dict)
            or not isinstance(state.get("monitor"), dict)
        ):
            return "its optimizer, monitor or generator states are missing"
        return None

    why = problem()
    if why:
        raise ConfigError(
            f"{path} cannot be resumed: {why} (a damaged or edited checkpoint). The run is left as it "
            "was; resume another checkpoint of it (checkpoints/epoch_NNNN.pt, best.pt) or start a new run."
        )


def restore(exp, state: dict, loop, monitor, diag, scaler, shuffle, noise) -> dict:
    """Load a checkpoint's state into the run's objects; returns the metrics of its last epoch."""

    import numpy as np

    from nnlab.nn import bare

    bare(exp.model).load_state_dict(state["model"])
    exp.optimizer.load_state_dict(state["optimizer"])
    exp.scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    monitor.load_state_dict(state["monitor"])
    diag.load_state_dict(state["diagnostics"])
    pos = state["position"]
    loop.epoch, loop.batch, loop.step, loop.count = pos["epoch"], pos["batch"], pos["step"], pos["count"]
    loop.sums = None if pos["sums"] is None else pos["sums"].to(exp.device)
    shuffle.set_state(pos["shuffle"])
    rng = state["rng"]
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    np.random.set_state((rng["numpy"][0], rng["numpy"][1].numpy(), *rng["numpy"][2:]))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    noise.set_state(rng["noise"])
    return state["metrics"]


# settings a resumed run may change: they do not alter what is computed
MAY_CHANGE = ("trainer.epochs", "trainer.progress", "trainer.keep_checkpoints", "sweep.on_failure", "overwrite")


def run_of(resume: str) -> Path:
    """The run folder that `resume=PATH` continues: PATH itself, or the run whose checkpoints/ holds the
    .pt file PATH. Anything else is refused before any file is written."""
    path = Path(resume).expanduser()
    if path.is_file() and path.suffix == ".pt" and path.parent.name == "checkpoints":
        run = path.parent.parent
    elif path.is_dir():
        run = path
    else:
        raise ConfigError(
            f"resume={resume}: {'no such file or folder' if not path.exists() else 'not a run folder'}. "
            "Give a run folder (RUN, holding config.yaml and checkpoints/) or a checkpoint in its "
            "checkpoints/ folder (RUN/checkpoints/epoch_0003.pt), or resume=auto."
        )
    if not (run / "config.yaml").is_file() or not (run / "checkpoints").is_dir():
        raise ConfigError(f"resume={resume}: {run} is not an nnlab run folder (no config.yaml and checkpoints/ in it).")
    return run


def finished(run_dir: Path, epochs: int) -> dict | None:
    """The summary of a run in `run_dir` that has nothing left to do for `epochs`: it ended well (status
    ok) after that many epochs, or stopped early. None when there is something to continue."""
    from nnlab.run_files.records import read_summary

    summary = read_summary(run_dir)
    if summary is None or summary["status"] != "ok":
        return None
    done = summary.get("epochs_run") or 0
    return summary if done >= epochs or summary.get("stopped_early") else None


def resume_state(resume: str | None, run_dir: Path, config: dict) -> tuple[dict | None, Path | None]:
    """The checkpoint to continue from, and its path: resume=auto (this run directory's last.pt, if any) or
    a path (a run directory or a checkpoint file in its checkpoints/); (None, None): a fresh start. Refuses a
    checkpoint made with a different config, or one that does not say what config it was made with."""
    if resume is None:
        return None, None
    path = run_dir / "checkpoints" / "last.pt" if resume == "auto" else Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if resume == "auto" and not path.exists():
        return None, None
    state = load(path)
    compatible(state, path, config)
    return state, path


def compatible(state: dict, path: Path, config: dict) -> None:
    """Refuse (ConfigError) to continue `state` under `config` where they compute different things."""
    from nnlab.config.schema import flatten

    if not isinstance(state.get("config"), dict) or "position" not in state:
        raise ConfigError(
            f"{path} cannot be resumed: it does not record the config and loop position it was "
            "saved with (made by another tool, or damaged). Start a new run, or resume another checkpoint."
        )

    def compared(c: dict) -> dict:
        return {
            k: v
            for k, v in flatten(c).items()
            if k.split(".")[0] not in ("resume", "choices", "overrides", "overview", "multirun") and k not in MAY_CHANGE
        }

    from nnlab.config.targets import moved

    saved = dict(state["config"])
    saved.update({g: dict(saved[g]) for g in ("optimizer", "schedule") if isinstance(saved.get(g), dict)})
    moved(saved)  # a target that has moved since the checkpoint was saved
    mine, theirs = compared(config), compared(saved)
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        shown = ", ".join(f"{k}={theirs.get(k)!r} there vs {mine.get(k)!r} here" for k in differ[:5])
        raise ConfigError(
            f"{path} was made with a different config ({shown}); resume with the same overrides "
            f"(only {', '.join(MAY_CHANGE)} may change), or start a new run."
        )
