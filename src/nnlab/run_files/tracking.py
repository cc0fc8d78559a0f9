"""Where a run's numbers go: TensorBoard event files (in RUN itself, so that TensorBoard names the run by
its folder: `activation=tanh`, not `activation=tanh/tb`) and metrics.jsonl side by side, train.log, and
summary.json at the end. Tags are grouped by what they measure: loss/train, acc/val; the per-layer
diagnostics under stats/ (stats/grad_norm/layer1), the pictures under plots/, the histograms by what they show
(stats.weights/, stats.grads/, stats.activations/), so that TensorBoard, which orders groups by name, shows
the learning curves first."""

from __future__ import annotations

import functools
import json
import logging
import math
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

PLOTS = "plots/"  # a run's pictures, one group after the learning curves (acc, loss), before the statistics (stats)
LEARNING_CURVES = "1 learning curves (per epoch)"  # CUSTOM SCALARS' first category; a seed sweep's bands join it


class Tracker:
    def __init__(self, run_dir: str | Path, purge_step: int | None = None):
        """purge_step: a resumed run hides the events an earlier process wrote from this step on."""
        from nnlab.run_files.events import EventFile

        self.run_dir = Path(run_dir)
        self.writer = EventFile(self.run_dir, purge_step=purge_step)
        from nnlab.run_files.folder import open_append

        self.jsonl = open_append(self.run_dir / "metrics.jsonl")
        self.logger = None  # train.log's logger, opened by the first log()
        self.painter = None  # views.painter.Painter: figures drawn in worker processes (batched sweeps)
        self.skip: frozenset = frozenset()  # figure tags not drawn (a stack's runs: sweep.run_figures)
        self.pending: list = []  # (tag, step, views.painter.Drawing) not yet written

    def scalars(self, step: int, values: Mapping[str, float], epoch: int | None = None) -> None:
        """One TensorBoard event for all of a step's values (one per value would cost as much each)."""
        self.rows([(step, values)], epoch)

    def epoch_scalars(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        """An epoch's values (loss/train, acc/val, ...): in TensorBoard against the epoch, as Keras logs them
        (the terminal's epoch 1..N, not the step); in metrics.jsonl with both."""
        self.rows([(step, values)], epoch, by_epoch=True)

    def rows(
        self, rows: list[tuple[int, Mapping[str, float]]], epoch: int | None = None, by_epoch: bool = False
    ) -> None:
        """Several steps' values at once (a log window): an event per step (`by_epoch`: at the epoch), one
        write to metrics.jsonl."""
        now, lines = time.time(), []
        head = "" if epoch is None else f', "epoch": {int(epoch)}'
        for step, values in rows:
            self.writer.scalars(epoch if by_epoch else step, values, now)
            if "step" in values or "epoch" in values:  # (never nnlab's own tags: the row as a dict says it)
                row = {"step": step, **({"epoch": epoch} if epoch is not None else {}), **values}
                lines.append(json.dumps({k: _json_number(v) for k, v in row.items()}) + "\n")
                continue
            body = "".join(f", {_json_key(k)}: {_json_value(v)}" for k, v in values.items())
            lines.append(f'{{"step": {int(step)}{head}{body}}}\n')  # what json.dumps writes, ~3x faster
        self.jsonl.write("".join(lines))

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.writer.image(PLOTS + tag, image, step, dataformats="CHW")

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self.writer.histogram(tag, values.detach().float().flatten().cpu(), step)

    def figure(self, tag: str, draw, args: tuple, step: int, filename: str | None = None) -> None:
        """The figure `draw(*args)` (a top-level function returning a matplotlib Figure) into
        TensorBoard, and as RUN/FILENAME if given (rendered once). With a painter (views.painter.Painter) it is
        drawn in the painter's worker and written to TensorBoard when done (at the latest by close())."""
        from nnlab.views.painter import render

        if not self.draws(tag):
            return
        png = str(self.run_dir / filename) if filename else None
        if self.painter is None:
            self._add_image(tag, render(draw, args, png), step)
        else:
            self.pending.append((tag, step, self.painter.submit(render, draw, args, png)))

    def draws(self, tag: str) -> bool:
        """Whether figure() draws this tag (a stack's runs skip some: sweep.run_figures, sweep.light)."""
        return tag not in self.skip

    def _add_image(self, tag: str, image, step: int) -> None:
        self.writer.image(PLOTS + tag, image, step, dataformats="HWC")

    def wait_for_figures(self) -> None:
        """Write the figures the painter has drawn (waiting for those it is still drawing)."""
        pending, self.pending = self.pending, []
        for tag, step, drawing in pending:
            self._add_image(tag, drawing.result(), step)

    def layout(self, score: str, logged: set[str] | frozenset[str] = frozenset()) -> None:
        """TensorBoard's CUSTOM SCALARS tab, in the order a reader wants it: the learning curves first
        (train and val overlaid: the loss, then the score), then the per-step values, then the diagnostics
        this run logs (`logged`: their tag groups, `step/lr`, `stats/dead_frac`, ...): no chart waits on tags
        that never come ("Missing Tags")."""
        diagnostics = {
            "gradient norm per layer": "stats/grad_norm",
            "update / weight ratio": "stats/update_ratio",
            "dead units (rectifiers)": "stats/dead_frac",
            "units passing no gradient back": "stats/no_grad_frac",
            "saturated units (sigmoid, tanh)": "stats/saturated_frac",
            "batch norm's learned scale (gamma), per layer": "stats/bn_scale",
            "batch norm's learned shift (beta), per layer": "stats/bn_shift",
        }
        charts = {
            LEARNING_CURVES: {
                "loss: train, val, test (its point at the end)": ["Multiline", [r"^loss/(train|val|test)$"]],
                f"{score}: train, val, test (its point at the end)": ["Multiline", [rf"^{score}/(train|val|test)$"]],
            },
            "2 per step": {
                "loss": ["Multiline", [r"^step/loss$"]],
                "global gradient norm": ["Multiline", [r"^step/grad_norm$"]],
                **({"learning rate": ["Multiline", [r"^step/lr$"]]} if "step/lr" in logged else {}),
            },
            "3 diagnostics": {
                name: ["Multiline", [rf"^{group}/"]] for name, group in diagnostics.items() if group in logged
            },
        }
        self.writer.custom_scalars({k: v for k, v in charts.items() if v})

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.text(tag, text, step)

    def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float], experiment: bool = True) -> None:
        """The HPARAMS tab: this run's hyperparameters against final metrics that are also logged as
        scalars under the same tags (so a sweep's runs line up in one table). `experiment`: also the
        tab's column list, from this run alone; a run in a sweep or in outputs/runs leaves it to
        overview(), which writes it once from all of them."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {
            k: str(v) if _integer(v) else v if isinstance(v, (float, str, bool)) else str(v) for k, v in hparams.items()
        }
        finite = {k: metrics[k] for k in metric_order(metrics) if metrics[k] is not None and math.isfinite(metrics[k])}
        exp, start, end = hparams_summary(clean, finite)
        for summary in (exp, start, end) if experiment else (start, end):
            self.writer.summary(summary)

    def log(self, text: str) -> None:
        """A line (or lines) of what the terminal shows, into RUN/train.log with the time."""
        if self.logger is None:
            self.logger = _run_log(self.run_dir)
        self.logger.info(text)

    def close(self) -> None:
        if self.jsonl.closed:  # closed already
            return
        self.wait_for_figures()
        self.writer.close()
        self.jsonl.close()
        for handler in list(self.logger.handlers if self.logger is not None else []):
            self.logger.removeHandler(handler)
            _close_handler(handler)


def overview(folder: Path, sweep: bool = True, extra: tuple[str, ...] = ()) -> None:
    """What TensorBoard shows of a folder of runs as a whole, as the run `overview` beside them: the HPARAMS
    tab's columns computed from every run (summary.json's "hparams"): the settings that differ between them,
    against the final metrics; a sweep's pictures too (report.png: the curves; decision_boundaries.png:
    every setting's boundary in a grid). `sweep` False: the folder of runs alone named by their time
    (outputs/runs), refreshed as each ends. TensorBoard takes the first experiment it finds of several, so
    the runs in such a folder write none of their own, and this one's earlier events are replaced, not
    added to (under its lock: two runs ending at once). `extra`: more metric columns the runs log
    (reach_scalars: nnlab report --to's)."""
    from matplotlib.image import imread

    from nnlab.errors import FolderInUse
    from nnlab.run_files.events import EventFile
    from nnlab.run_files.folder import Lock, refuse_link
    from nnlab.run_files.records import read_summary

    runs = []
    for path in sorted(folder.rglob("summary.json") if sweep else folder.glob("*/summary.json")):
        summary = read_summary(path.parent)
        if summary is not None:
            runs.append(summary)
    names = ("report.png", "report_map.png", "decision_boundaries.png")
    pictures = [folder / n for n in names if sweep and (folder / n).is_file()]
    runs = [r for r in runs if isinstance(r.get("hparams"), dict)]
    target = folder / "overview"
    if not pictures and not runs:
        return
    refuse_link(target)
    try:
        with Lock(target, wait=5.0):  # another run ending this moment writes it first
            earlier = list(target.glob("events.out.tfevents.*"))
            with EventFile(target) as writer:
                for path in pictures:
                    writer.image(f"sweep/{path.stem}", imread(path)[..., :3], 0, dataformats="HWC")
                if runs:
                    writer.summary(_experiment(runs, extra))
            for path in earlier:
                path.unlink(missing_ok=True)
    except FolderInUse:  # still held after 5 s: the holder's overview stands
        return


def setting_means(sweep: Path, settings: list[tuple[str, list[list[dict]]]]) -> None:
    """Each setting of a seed sweep (its name, and each of its runs' epoch rows from metrics.jsonl) as a
    TensorBoard run of its own, `mean/<setting>` (`mean/init=he_normal`): per epoch, against the epoch,
    the mean over its seeds of every epoch metric (loss/train, acc/val, ...), under the runs' own tags:
    SCALARS then shows a line per setting among its seeds' lines (filter the runs with `mean/` to see only
    them). Beside each, the edges of its seeds' 95% confidence band (seeds/loss/val/low, .../high), and a
    chart per metric in CUSTOM SCALARS' first category that draws them: a shaded band per setting, not a
    line per seed. Written anew each time (a resumed sweep: no doubled points)."""

    from nnlab.compare import band
    from nnlab.metrics import ALL, within
    from nnlab.run_files.events import EventFile
    from nnlab.run_files.folder import refuse_link

    means = sweep / "mean"
    refuse_link(means)
    if means.is_dir():
        shutil.rmtree(means)  # only ours: event files this function wrote
    for name, runs in settings:
        by_epoch: dict[int, dict[str, list]] = {}
        for rows in runs:
            for row in rows:
                at = by_epoch.setdefault(row["epoch"], {})
                for tag, value in row.items():
                    if (
                        tag.split("/")[0] in ALL
                        and tag.endswith(("/train", "/val"))
                        and isinstance(value, (int, float))
                        and math.isfinite(value)
                    ):
                        at.setdefault(tag, []).append(value)
        with EventFile(means / name.replace("/", "_")) as writer:
            for epoch, at in sorted(by_epoch.items()):
                row = {}
                for tag, values in at.items():
                    b = band(values)
                    row[tag] = b.mean
                    if b.n > 1:  # within the metric's range (an accuracy's band never above 1)
                        row[f"seeds/{tag}/low"] = within(tag, b.low)
                        row[f"seeds/{tag}/high"] = within(tag, b.high)
                writer.scalars(epoch, row)
            tags = sorted({t for at in by_epoch.values() for t in at}, key=lambda t: (t.split("/")[0] != "loss", t))
            writer.custom_scalars(
                {
                    LEARNING_CURVES: {
                        f"{t}: mean, 95% CI of the seeds": ["Margin", [t, f"seeds/{t}/low", f"seeds/{t}/high"]]
                        for t in tags
                    }
                }
            )


def reach_scalars(values: dict[Path, dict[str, float | None]]) -> tuple[str, ...]:
    """nnlab report --to's epochs and seconds, each run's in its own TensorBoard log (a file of their own,
    `*.reach`, replacing the last one written) under `reach/...`: HPARAMS can show them beside the metrics
    (overview's `extra`). Returns their tags."""
    from nnlab.run_files.events import EventFile
    from nnlab.run_files.folder import refuse_link

    tags: dict[str, None] = {}
    for run, reached in values.items():
        refuse_link(run)
        earlier = list(run.glob("events.out.tfevents.*.reach"))
        with EventFile(run, suffix=".reach") as writer:
            for key in reached:
                tags[f"reach/{key}"] = None
            writer.scalars(0, {f"reach/{key}": value for key, value in reached.items() if value is not None})
        for path in earlier:
            path.unlink(missing_ok=True)
    return tuple(tags)


def _experiment(runs: list[dict], extra: tuple[str, ...] = ()):
    """The HPARAMS experiment of several runs: the hyperparameters whose values differ between them (all of
    them where none does), each with its values' domain, and their final metrics."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    names = list(dict.fromkeys(k for r in runs for k in r["hparams"]))
    infos = []
    for name in names:
        values = [r["hparams"].get(name) for r in runs]
        known = [v for v in values if v is not None]
        differs = len({json.dumps(v) for v in values}) > 1
        if known and all(map(_integer, known)):  # shown as 3, not 3.0000
            info = api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_STRING, differs=differs)
            info.domain_discrete.extend(str(v) for v in sorted(set(known)))
        elif known and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in known):
            info = api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_FLOAT64, differs=differs)
            info.domain_interval.min_value, info.domain_interval.max_value = min(known), max(known)
        else:
            info = api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_STRING, differs=differs)
            info.domain_discrete.extend(sorted({str(v) for v in known}))
        infos.append(info)
    if any(i.differs for i in infos):  # the dashboard shows its first five columns: only what differs
        infos = [i for i in infos if i.differs]  # (what all runs share is in each run's config text)
    metrics = [
        *metric_order(k for r in runs for k in r.get("metrics", {}) if k.split("/")[-1] in ("train", "val", "test")),
        *extra,
    ]
    experiment = api_pb2.Experiment(
        hparam_infos=infos, metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in metrics]
    )
    content = HParamsPluginData(experiment=experiment, version=0).SerializeToString()  # as torch writes its own
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content))
    return Summary(value=[Summary.Value(tag="_hparams_/experiment", metadata=meta)])


def _integer(value: Any) -> bool:
    """An integer hyperparameter (a seed, a batch size): TensorBoard shows it as text, `3`, not `3.0000`."""
    return isinstance(value, int) and not isinstance(value, bool)


def metric_order(names) -> list[str]:
    """The HPARAMS tab's metric columns: the test and validation score and the validation loss first (what a
    comparison reads), then the others as they came."""
    names = list(dict.fromkeys(names))
    first = [m for m in ("acc/test", "r2/test", "acc/val", "r2/val", "loss/val", "loss/test") if m in names]
    return [*first, *(m for m in names if m not in first)]


def has_events(folder: Path) -> bool:
    """TensorBoard event files in `folder` (a run's), from an earlier process."""
    return any(folder.glob("events.out.tfevents.*"))


def _run_log(run_dir: Path):
    """A Python logger whose records go to RUN/train.log only (not to the terminal, which rich draws)."""

    logger = logging.getLogger("nnlab.run." + str(run_dir.resolve()).replace(".", "_"))
    logger.propagate, logger.level = False, logging.INFO
    for handler in list(logger.handlers):  # a second tracker on the same folder (a resume in this process)
        logger.removeHandler(handler)
        _close_handler(handler)
    from nnlab.run_files.folder import open_append

    handler = logging.StreamHandler(open_append(run_dir / "train.log"))
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    return logger


def _close_handler(handler) -> None:
    """A train.log handler and the file it writes (a StreamHandler leaves its stream open)."""
    handler.flush()
    handler.close()
    stream = getattr(handler, "stream", None)
    if stream is not None:
        stream.close()


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # NaN/Inf are not JSON
    return v


@functools.lru_cache(maxsize=4096)
def _json_key(key: str) -> str:
    return json.dumps(key)


def _json_value(v: Any) -> str:
    """A metrics row's value as JSON: a finite float or int as json.dumps writes it (its repr), NaN and
    infinities as the strings "nan", "inf", "-inf" (JSON has no such numbers)."""
    if type(v) is float:
        return repr(v) if math.isfinite(v) else f'"{v}"'
    if type(v) is int:
        return repr(v)
    return json.dumps(_json_number(v))


def write_summary(run_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    from nnlab.run_files.folder import write_file

    return write_file(Path(run_dir) / "summary.json", json.dumps(summary, indent=2) + "\n")


def record_failure(run_dir: str | Path, error: BaseException) -> Path:
    """summary.json with status "failed" (unless the run already wrote one) and the traceback in error.txt."""

    from nnlab.run_files.folder import write_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = write_file(run_dir / "error.txt", "".join(traceback.format_exception(error)))
    from nnlab.run_files.records import read_summary

    previous = read_summary(run_dir) or {}
    write_summary(
        run_dir,
        {
            **previous,
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "run_dir": str(run_dir),
            "metrics": previous.get("metrics", {}),
        },
    )
    return path


def environment(device: str) -> dict[str, Any]:
    """What a run needs to be repeated, besides its config: package versions, the device, the platform,
    and the git commit of the nnlab checkout when it is one."""
    return {**_process_environment(), "device": device}


@functools.lru_cache(maxsize=1)
def _process_environment() -> dict[str, Any]:
    """The part that is the same for every run of this process (the members of a stacked sweep share it)."""

    packages = {}
    for name in ("nnlab", "torch", "torchvision", "hydra-core", "omegaconf", "tensorboard", "numpy"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "packages": packages,
        "platform": platform.platform(),
        "command": list(sys.argv),
        "git_commit": commit,
    }
