"""`nnlab lr-find`: the learning-rate range test (Smith 2015; the one-epoch finder of the notes).

The rate grows exponentially from min_lr to max_lr over `steps` batches of the training set; the test
stops once the smoothed loss explodes. The suggestion is the rate of steepest descent of the smoothed
loss (before its minimum).
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class RangeTest:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggestion: float | None = None
    exploded_at: float | None = None


def range_test(exp, min_lr: float, max_lr: float, steps: int, smoothing: float, explode_factor: float) -> RangeTest:
    from nnlab.data.loader import batch_indices
    from nnlab.training.steps import train_step

    growth = (max_lr / min_lr) ** (1 / max(1, steps - 1))
    exp.scheduler = _Fixed()  # the test sets the rate itself
    scaler = torch.amp.GradScaler(exp.device.type, enabled=exp.trainer.precision == "fp16")
    shuffle = torch.Generator().manual_seed(exp.trainer.seed)
    result, avg = RangeTest(), 0.0
    exp.model.train()
    while len(result.lrs) < steps:  # as many passes over the data as `steps` needs
        for idx in batch_indices(len(exp.data.train), exp.trainer.batch_size, shuffle, exp.device):
            i = len(result.lrs)
            lr = min_lr * growth**i
            for group in exp.optimizer.param_groups:
                group["lr"] = lr
            _, loss, _ = train_step(exp, exp.data.train.x[idx], exp.data.train.y[idx], scaler)
            value = loss.item()
            avg = smoothing * avg + (1 - smoothing) * value
            smooth = avg / (1 - smoothing ** (i + 1))  # bias-corrected
            result.lrs.append(lr)
            result.losses.append(value)
            result.smoothed.append(smooth)
            if not math.isfinite(smooth) or smooth > explode_factor * min(result.smoothed):
                result.exploded_at = lr
                break
            if len(result.lrs) >= steps:
                break
        if result.exploded_at is not None:
            break
    result.suggestion = steepest_descent(result.lrs, result.smoothed)
    return result


def steepest_descent(lrs: list[float], smoothed: list[float]) -> float | None:
    """The rate where the smoothed loss falls fastest per decade of rate, before the loss minimum."""
    finite = [(lr, s) for lr, s in zip(lrs, smoothed) if math.isfinite(s)]
    if len(finite) < 3:
        return None
    best = min(range(len(finite)), key=lambda i: finite[i][1])
    points = finite[: max(best + 1, 3)]
    slopes = [
        (points[i + 1][1] - points[i - 1][1]) / (math.log10(points[i + 1][0]) - math.log10(points[i - 1][0]))
        for i in range(1, len(points) - 1)
    ]
    return points[1 + min(range(len(slopes)), key=slopes.__getitem__)][0]


class _Fixed:
    """A scheduler that leaves the rate alone."""

    def step(self, *args) -> None:
        pass


def figure(result: RangeTest, title: str):
    """The loss against the rate on a log axis, up to where the smoothed loss passes 4x its minimum (the
    range test's divergence, marked by a dotted line): the falling part fills the chart, nothing runs off it."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), dpi=100)
    ax = fig.subplots()
    finite = [s for s in result.smoothed if math.isfinite(s)]
    top = min(max(finite), 4 * min(finite)) * 1.1 if finite else math.inf
    bottom = min(finite) * 0.9 if finite else -math.inf
    cut = next((i for i, s in enumerate(result.smoothed) if not s <= top), len(result.lrs))  # (NaN: beyond too)
    lrs = result.lrs[:cut]
    ax.plot(  # the raw loss too within the chart: a batch's loss above or below the smoothed range touches its edge
        lrs,
        [max(bottom, min(v, top)) if math.isfinite(v) else top for v in result.losses[:cut]],
        color="tab:blue",
        alpha=0.3,
        label="loss",
    )
    ax.plot(lrs, result.smoothed[:cut], color="tab:blue", label="smoothed loss")
    if cut < len(result.lrs):
        ax.axvline(result.lrs[cut], color="grey", ls=":", label=f"diverging from {result.lrs[cut]:.1e}")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="tab:red", ls="--", label=f"suggested {result.suggestion:.2e}")
    if finite:
        ax.set_ylim(bottom, top)
    ax.set(xscale="log", xlabel="learning rate (log scale)", ylabel="training loss", title=title)
    ax.set_xlim(result.lrs[0], result.lrs[-1])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=10)
    fig.tight_layout()
    return fig


def find_rate(cfg, run_dir, cpu_share: int | None = None, overrides: tuple = ()) -> float | None:
    """The `nnlab lr-find` job: the test on the composed config, a PNG, TensorBoard, lr_find.json."""

    from rich.markup import escape

    from nnlab.run_files.tracking import Tracker
    from nnlab.training.setup import setup
    from nnlab.views.console import console

    run_dir = Path(run_dir)
    f = cfg.lr_find
    exp = setup(cfg, cpu_share)
    result = range_test(exp, f.min_lr, f.max_lr, f.steps, f.smoothing, f.explode_factor)
    tracker = Tracker(run_dir)
    try:
        for i, (lr, loss, smooth) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
            tracker.scalars(i, {"lr_find/lr": lr, "lr_find/loss": loss, "lr_find/smoothed_loss": smooth})
        optimizer = cfg.optimizer._target_.rpartition(".")[2]
        tracker.figure("lr_find", figure, (result, f"learning-rate range test ({optimizer})"), 0, "lr_find.png")
    finally:
        tracker.close()
    from nnlab.run_files.folder import write_file

    write_file(run_dir / "lr_find.json", json.dumps(result.__dict__, indent=2))
    if result.suggestion is None:
        console.print("no suggestion: the loss never fell; widen lr_find.min_lr/max_lr or raise lr_find.steps")
    else:
        console.print(
            f"suggested learning rate: [bold]{result.suggestion:.2e}[/] (steepest descent of the smoothed loss)"
        )
        kept = [
            o
            for o in overrides
            if not o.split("=", 1)[0].lstrip("+~").startswith(("lr_find.", "hydra.", "optimizer.lr"))
        ]
        console.print(
            "train with it: " + escape(shlex.join(["nnlab", "train", *kept, f"optimizer.lr={result.suggestion:.2e}"])),
            soft_wrap=True,
            highlight=False,
        )
    if result.exploded_at is not None:
        console.print(f"the loss exploded at lr {result.exploded_at:.2e}; the test stopped there")
    console.print(f"curve: {run_dir / 'lr_find.png'}  (TensorBoard: lr_find/*)", soft_wrap=True)
    return result.suggestion
