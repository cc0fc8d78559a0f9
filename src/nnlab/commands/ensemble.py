"""`nnlab ensemble PATH`: average the predictions of the runs under PATH (e.g. a sweep over seeds) on one
test set, and compare the ensemble with its members: their mean and spread.

Every member is evaluated on the same test examples: those of the first run's data config (for the toy
sets, whose points depend on the seed, the first run's draw), each after its own preprocessing (the
statistics of its own training split). The ensemble's output is the loss's `combine` of the members'
outputs (the mean of their probabilities; for regression, the mean of their predictions). Metrics: loss and
accuracy, or loss, MSE, MAE and R^2 for regression. Written beside the runs: ensemble.json and TensorBoard
scalars under PATH/ensemble.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path


def members(root: Path) -> list[Path]:
    """Run directories under root with a config and a checkpoint, finished or not."""
    from nnlab.run_files import checkpoint

    found = []
    for config in sorted(root.rglob("config.yaml")):
        run = config.parent
        if run.name == ".hydra":
            continue
        if checkpoint.of_run(run).is_file():
            found.append(run)
    return found


def evaluate_members(runs: list[Path], device: str = "cpu") -> dict:
    import torch
    from hydra.utils import instantiate

    from nnlab import metrics
    from nnlab.commands.load_run import load_run
    from nnlab.config.validate import load_run_config
    from nnlab.errors import ConfigError

    first = load_run_config(runs[0])
    raw = instantiate(first.data.source, _partial_=True)()
    x_test, y_test = raw[2], raw[3].to(device)
    loss_fn, outputs, rows, kind = None, [], [], "points"
    for run in runs:
        cfg = load_run_config(run)
        if cfg.data.source._target_ != first.data.source._target_:
            raise ConfigError(
                f"{run} was trained on {cfg.data.source._target_}, not on {first.data.source._target_} "
                "like the first run: an ensemble needs members trained for the same task."
            )
        member = load_run(run, device=device)  # its own model, loss and preprocessing statistics
        with torch.no_grad():
            out = torch.cat([member.model(x_test[i : i + 4096]) for i in range(0, len(x_test), 4096)]).float()
        loss_fn, kind = loss_fn or member.loss_fn, member.kind
        outputs.append(out)
        rows.append(
            {"run": str(run), "checkpoint": member.checkpoint.name, **_metrics(member.loss_fn, out, y_test, kind)}
        )
    ensemble = _metrics(loss_fn, loss_fn.combine(outputs), y_test, kind)
    summary = {
        "members": rows,
        "ensemble": ensemble,
        "test_examples": len(y_test),
        "metrics": ["loss", *metrics.names(kind)],
        "test_set_of": str(runs[0]),
    }
    for key in summary["metrics"]:
        values = [r[key] for r in rows]
        summary[f"members_{key}_mean"] = statistics.fmean(values)
        summary[f"members_{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _metrics(loss_fn, out, y, kind: str) -> dict[str, float]:
    import torch

    from nnlab import metrics

    with torch.no_grad():
        pred = metrics.prediction(kind, loss_fn, out)
        return {"loss": loss_fn(out, y).item(), **metrics.finish(kind, metrics.sums(kind, pred, y), len(y))}


def main(argv: list[str]) -> int:
    from nnlab.errors import ConfigError
    from nnlab.views.console import console, error

    parser = argparse.ArgumentParser(
        prog="nnlab ensemble", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path, help="a sweep folder, or any folder of runs")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    runs = members(args.path) if args.path.is_dir() else []
    if len(runs) < 2:
        error(f"an ensemble needs at least 2 runs with checkpoints under {args.path}; found {len(runs)}.")
        return 2
    from nnlab.errors import unwritable

    problem = unwritable(args.path)
    if problem:
        error(
            f"the ensemble's results (ensemble.json, TensorBoard's ensemble/) cannot be written to {args.path}: "
            f"{problem}. Nothing was evaluated; copy the runs somewhere writable, or make the folder writable."
        )
        return 2
    try:
        result = evaluate_members(runs, args.device)
        _log(args.path, result)
    except ConfigError as e:
        error(str(e))
        return 2
    except OSError as e:
        error(f"could not write {e.filename or args.path}: {e.strerror or e}.", title="cannot write")
        return 1
    _table(console, args.path, result)
    return 0


def _log(root: Path, result: dict) -> None:
    from nnlab.run_files.folder import refuse_link, refuse_links, write_file
    from nnlab.run_files.tracking import Tracker

    refuse_link(root / "ensemble")
    (root / "ensemble").mkdir(exist_ok=True)
    refuse_links(root / "ensemble")
    write_file(root / "ensemble.json", json.dumps(result, indent=2) + "\n")
    tracker = Tracker(root / "ensemble")
    n = len(result["members"])
    values = {f"ensemble/{k}": v for k, v in result["ensemble"].items()}
    for key in result["metrics"]:
        values[f"members/{key}_mean"] = result[f"members_{key}_mean"]
        values[f"members/{key}_std"] = result[f"members_{key}_std"]
    tracker.scalars(n, values)
    tracker.close()


def _table(console, root: Path, result: dict) -> None:
    from rich.table import Table

    from nnlab.views.console import shown

    keys = result["metrics"]
    table = Table(title=f"ensemble of {len(result['members'])} runs, {result['test_examples']} test examples")
    for col in ("run", "checkpoint", *(f"{k}/test" for k in keys)):
        table.add_column(col, justify="left" if col in ("run", "checkpoint") else "right")
    for r in result["members"]:
        table.add_row(
            shown(Path(r["run"]).relative_to(root)) or ".", shown(r["checkpoint"]), *(f"{r[k]:.4f}" for k in keys)
        )
    table.add_row(
        "members: mean ± std",
        "",
        *(f"{result[f'members_{k}_mean']:.4f} ± {result[f'members_{k}_std']:.4f}" for k in keys),
        style="bold",
    )
    e = result["ensemble"]
    how = "mean of predictions" if "r2" in keys else "mean of probabilities"
    table.add_row(f"ensemble ({how})", "", *(f"{e[k]:.4f}" for k in keys), style="bold green")
    console.print(table)
    from nnlab import metrics

    score = "r2" if "r2" in keys else "acc"
    gain = e[score] - result[f"members_{score}_mean"]
    console.print(
        f"ensemble vs its mean member: {metrics.LABELS[score]} {gain:+.4f}, loss {e['loss'] - result['members_loss_mean']:+.4f} "
        f"(written to {shown(root / 'ensemble.json')}, TensorBoard: {shown(root / 'ensemble')})",
        soft_wrap=True,
    )
    if "test_set_of" in result:
        console.print(
            f"every member scored on the test set of {shown(result['test_set_of'])} (its data.source: the same "
            "examples for all)",
            soft_wrap=True,
            highlight=False,
        )
    best = max(r[score] for r in result["members"])
    weak = [r for r in result["members"] if r[score] < best - 0.1]  # far behind the best: the average carries them
    if weak:
        names = ", ".join(shown(Path(r["run"]).relative_to(root)) or "." for r in weak)
        console.print(
            f"[yellow]weak members[/] ({metrics.LABELS[score]} more than 0.1 below the best member's {best:.4f}): "
            f"{names}; the ensemble averages them in with the others: leave them out to compare",
            soft_wrap=True,
        )
    if not math.isfinite(e["loss"]):
        console.print("[yellow]the ensemble loss is not finite: a member diverged[/]")
