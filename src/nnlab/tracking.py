"""Where a run's numbers go: TensorBoard event files (in RUN itself, so that TensorBoard names the run by
its folder: `activation=tanh`, not `activation=tanh/tb`) and metrics.jsonl side by side, train.log, and
summary.json at the end. Tags are grouped by what they measure: loss/train, acc/val, grad_norm/layer1."""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Mapping

import torch


class Tracker:
    def __init__(self, run_dir: str | Path, purge_step: int | None = None):
        """purge_step: a resumed run hides the events an earlier process wrote from this step on."""
        from torch.utils.tensorboard import SummaryWriter  # imported here: only training pays for it

        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(str(self.run_dir), purge_step=purge_step)
        self.jsonl = open(self.run_dir / "metrics.jsonl", "a", buffering=1)
        self.logger = None  # train.log's logger, opened by the first log()
        self.painter = None  # figures.Painter: figures drawn in a worker process (batched sweeps)
        self.pending: list = []  # (tag, step, figures.Drawing) not yet written

    def scalars(self, step: int, values: Mapping[str, float], epoch: int | None = None) -> None:
        """One TensorBoard event for all of a step's values (one per value would cost as much each)."""
        self.rows([(step, values)], epoch)

    def rows(self, rows: list[tuple[int, Mapping[str, float]]], epoch: int | None = None) -> None:
        """Several steps' values at once (a log window): an event per step, one write to metrics.jsonl."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        now, lines = time.time(), []
        for step, values in rows:
            summary = Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()])
            self.writer.file_writer.add_summary(summary, step, now)
            row = {"step": step, **({"epoch": epoch} if epoch is not None else {}), **values}
            try:
                lines.append(json.dumps(row, allow_nan=False))
            except ValueError:  # NaN/Inf are not JSON: written as strings
                lines.append(json.dumps({k: _json_number(v) for k, v in row.items()}))
        self.jsonl.write("".join(line + "\n" for line in lines))

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="CHW")

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self.writer.add_histogram(tag, values.detach().float().flatten().cpu(), step)

    def figure(self, tag: str, draw, args: tuple, step: int, filename: str | None = None) -> None:
        """The figure `draw(*args)` (a top-level function returning a matplotlib Figure) into
        TensorBoard, and as RUN/FILENAME if given (rendered once). With a painter (figures.Painter) it is
        drawn in the painter's worker and written to TensorBoard when done (at the latest by close())."""
        from nnlab.figures import render

        png = str(self.run_dir / filename) if filename else None
        if self.painter is None:
            self._add_image(tag, render(draw, args, png), step)
        else:
            self.pending.append((tag, step, self.painter.submit(render, draw, args, png)))

    def _add_image(self, tag: str, image, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def wait_for_figures(self) -> None:
        """Write the figures the painter has drawn (waiting for those it is still drawing)."""
        pending, self.pending = self.pending, []
        for tag, step, drawing in pending:
            self._add_image(tag, drawing.result(), step)

    def layout(self, score: str) -> None:
        """TensorBoard's CUSTOM SCALARS tab, in the order a reader wants it: the learning curves first
        (train and val overlaid: the loss, then the score), then the per-step values, then diagnostics."""
        self.writer.add_custom_scalars({
            "1 learning curves (per epoch)": {
                "loss: train, val": ["Multiline", [r"^loss/(train|val)$"]],
                f"{score}: train, val": ["Multiline", [rf"^{score}/(train|val)$"]],
            },
            "2 per step": {
                "loss": ["Multiline", [r"^step/loss$"]],
                "global gradient norm": ["Multiline", [r"^step/grad_norm$"]],
                "learning rate": ["Multiline", [r"^step/lr$"]],
            },
            "3 diagnostics": {
                "gradient norm per layer": ["Multiline", [r"^grad_norm/layer"]],
                "update / weight ratio": ["Multiline", [r"^update_ratio/"]],
                "dead units (rectifiers)": ["Multiline", [r"^dead_frac/"]],
                "saturated units (sigmoid, tanh)": ["Multiline", [r"^saturated_frac/"]],
            },
        })  # fmt: skip

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """The HPARAMS tab: this run's hyperparameters against final metrics that are also logged as
        scalars under the same tags (so a sweep's runs line up in one table)."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        finite = {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)}
        for summary in hparams_summary(clean, finite):
            self.writer.file_writer.add_summary(summary)

    def log(self, text: str) -> None:
        """A line (or lines) of what the terminal shows, into RUN/train.log with the time."""
        if self.logger is None:
            self.logger = _run_log(self.run_dir)
        self.logger.info(text)

    def close(self) -> None:
        self.wait_for_figures()
        self.writer.flush()
        self.writer.close()
        self.jsonl.close()
        for handler in list(self.logger.handlers if self.logger is not None else []):
            self.logger.removeHandler(handler)
            handler.close()


def sweep_images(sweep: Path) -> None:
    """A sweep's overview pictures (report.png: the curves; decision_boundaries.png: every setting's
    boundary in a grid) into TensorBoard, as the run `overview` beside the sweep's runs."""
    from matplotlib.image import imread
    from torch.utils.tensorboard import SummaryWriter

    pictures = [p for p in (sweep / "report.png", sweep / "decision_boundaries.png") if p.is_file()]
    if not pictures:
        return
    with SummaryWriter(str(sweep / "overview")) as writer:
        for path in pictures:
            image = imread(path)[..., :3]
            writer.add_image(f"sweep/{path.stem}", image, 0, dataformats="HWC")


def has_events(folder: Path) -> bool:
    """TensorBoard event files in `folder` (a run's), from an earlier process."""
    return any(folder.glob("events.out.tfevents.*"))


def _run_log(run_dir: Path):
    """A Python logger whose records go to RUN/train.log only (not to the terminal, which rich draws)."""
    import logging

    logger = logging.getLogger("nnlab.run." + str(run_dir.resolve()).replace(".", "_"))
    logger.propagate, logger.level = False, logging.INFO
    for handler in list(logger.handlers):  # a second tracker on the same folder (a resume in this process)
        logger.removeHandler(handler)
        handler.close()
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    return logger


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # NaN/Inf are not JSON
    return v


def write_summary(run_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    path = Path(run_dir) / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(path)
    return path


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}; lists become strings."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif value is None or isinstance(value, (list, tuple)):
            out[name] = str(value)
        else:
            out[name] = value
    return out


def record_failure(run_dir: str | Path, error: BaseException) -> Path:
    """summary.json with status "failed" (unless the run already wrote one) and the traceback in error.txt."""
    import traceback

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "error.txt"
    path.write_text("".join(traceback.format_exception(error)))
    summary = run_dir / "summary.json"
    previous = json.loads(summary.read_text()) if summary.exists() else {}
    write_summary(run_dir, {**previous, "status": "failed", "error": f"{type(error).__name__}: {error}",
                            "run_dir": str(run_dir), "metrics": previous.get("metrics", {})})  # fmt: skip
    return path


def environment(device: str) -> dict[str, Any]:
    """What a run needs to be repeated, besides its config: package versions, the device, the platform,
    and the git commit of the nnlab checkout when it is one."""
    return {**_process_environment(), "device": device}


@functools.lru_cache(maxsize=1)
def _process_environment() -> dict[str, Any]:
    """The part that is the same for every run of this process (the members of a stacked sweep share it)."""
    import platform
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("nnlab", "torch", "torchvision", "hydra-core", "omegaconf", "tensorboard", "numpy"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": sys.version.split()[0], "packages": packages, "platform": platform.platform(),
            "command": list(sys.argv), "git_commit": commit}  # fmt: skip
