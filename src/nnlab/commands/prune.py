"""`nnlab prune PATH [OVERRIDES]`: magnitude pruning of trained runs (note 002: "big nets are easier to
train, then prune").

PATH is a run folder, or a folder of runs (a sweep: every run under it, each pruned, one folder of pruned
runs beside one another for `nnlab report`). Each run is trained again as `nnlab train` with its own saved
settings and `prune.source=RUN`: it starts from all of the run's weights (its best checkpoint), sets
`prune.amount` of them to zero, the smallest in magnitude first (torch.nn.utils.prune; `prune.scope`:
global or layer), and fine-tunes for `trainer.epochs` (2 here unless given), the zeros kept at zero. Its
summary.json says what is left (`pruned`). Without fine-tuning: `trainer.epochs=1 optimizer.lr=0` (the
pruned net as it is; batch norm's running statistics re-estimated on it).

The pruned runs go to outputs/prune/DATE_TIME/RUN_NAME, or under hydra.sweep.dir=PATH.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

USAGE = """usage: nnlab prune PATH [OVERRIDES...]    prune a run (or every run under a folder), then fine-tune

  nnlab prune outputs/runs/DATE_TIME prune.amount=0.9              90% of the weights, one global threshold
  nnlab prune outputs/sweeps/DATE_TIME prune.amount=0.97 prune.scope=layer trainer.epochs=3
  nnlab prune RUN trainer.epochs=1 optimizer.lr=0                  pruned, not fine-tuned

Settings: prune.amount (0.5), prune.scope (global | layer), and any of nnlab train's (the fine-tune's:
trainer.epochs, 2 unless given; optimizer.lr). The folder: outputs/prune/DATE_TIME unless hydra.sweep.dir=PATH.
"""

FINE_TUNE_EPOCHS = 2


def main(argv: list[str], train: Callable[..., int]) -> int:
    """`train(args)` runs `nnlab train ARGS` in this process (the CLI's, handed in)."""
    from nnlab.errors import ConfigError
    from nnlab.run_files.saved_config import run_overrides
    from nnlab.views.console import console, exit_with, shown

    if not argv or argv[0] in ("-h", "--help") or any(a in ("-h", "--help") for a in argv):
        print(USAGE, end="")
        return 0 if argv else 2
    root, given = Path(argv[0]), argv[1:]
    flags = [a for a in given if a.startswith("-")]
    try:
        if flags:
            raise ConfigError(f"nnlab prune takes a run folder and overrides (KEY=VALUE), not {flags[0]}.")
        runs = sorted(p.parent for p in root.rglob("summary.json")) if root.is_dir() else []
        if not runs:
            what = "does not exist" if not root.exists() else "holds no finished run (no summary.json)"
            raise ConfigError(f"{argv[0]} {what}: nnlab prune takes a run folder or a folder of runs.")
        folder = _folder(given)
        plans = [(run, [*_kept(run_overrides(run)), *_settings(given), f"prune.source={run}"]) for run in runs]
    except ConfigError as e:
        exit_with(str(e))
    codes = []
    for run, args in plans:
        target = folder / (run.name if len(runs) > 1 or run != root else "pruned")
        console.print(f"[bold]prune[/] {shown(run)} -> {shown(target)}", soft_wrap=True, highlight=False)
        codes.append(train([*args, f"hydra.run.dir={target}"]))  # (the pre-flight quotes paths holding `=`)
    if len(runs) > 1:
        console.print(f"  nnlab report {shown(folder)}    # the pruned runs side by side", soft_wrap=True)
    return max(codes)


def _kept(overrides: list[str]) -> list[str]:
    """A run's own settings, less those that name its folder or its resumption."""
    return [a for a in overrides if not a.startswith(("hydra.", "resume=", "overwrite=", "prune.source="))]


def _settings(given: list[str]) -> list[str]:
    """The command line's overrides, with the fine-tune's length where it does not give one."""
    given = [a for a in given if not a.startswith("hydra.sweep.dir=")]
    return (
        given if any(a.startswith("trainer.epochs=") for a in given) else [*given, f"trainer.epochs={FINE_TUNE_EPOCHS}"]
    )


def _folder(given: list[str]) -> Path:
    """hydra.sweep.dir=PATH, else outputs/prune/DATE_TIME."""
    chosen = next((a.partition("=")[2] for a in given if a.startswith("hydra.sweep.dir=")), None)
    return Path(chosen) if chosen else Path("outputs/prune") / time.strftime("%Y-%m-%d_%H-%M-%S")
