"""`nnlab report PATH`: compare the runs under a folder (a sweep, or any folder of runs).

A rich table of every run (the overrides that differ between runs, final metrics, best epoch, status,
wall time) sorted by a metric, and beside it report.csv, report.md and report.png (every run's loss and
accuracy (R^2) curves overlaid). Where runs differ only in their seed, they are one setting: a second
table gives each setting's mean, 95% confidence interval and n per metric, and a verdict against the
best setting (compare.py); report_settings.csv holds them, report.md shows them, and report.png draws
each setting's mean curves with a band of one standard deviation across its seeds.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnlab import metrics

SPLITS = ("train", "val", "test")
SORTABLE = tuple(f"{m}/{split}" for m in metrics.ALL for split in SPLITS)


def task_of(runs: list[Run]) -> str:
    """ "regression" when the runs logged R^2, else "classification"."""
    return (
        "regression"
        if any(r.metric("r2/train") is not None or r.metric("r2/test") is not None for r in runs)
        else "classification"
    )


def columns(task: str) -> tuple[str, ...]:
    """The metric columns: the score (accuracy or R^2) and the loss per split; regression adds MSE and MAE."""
    kind = "regression" if task == "regression" else "points"
    score = metrics.score(kind)
    rest = [f"{m}/{split}" for m in metrics.names(kind) if m != score for split in SPLITS]
    return (*(f"{score}/{split}" for split in SPLITS), *(f"loss/{split}" for split in SPLITS), *rest)


REACH = ("epochs to ", "seconds to ")  # derived columns of --to METRIC=VALUE: `epochs to acc/val>=0.9`


def reached(runs: list[Run]) -> list[str]:
    """The --to columns the runs carry (reach() put them in their metrics)."""
    return [k for k in dict.fromkeys(k for r in runs for k in r.summary.get("metrics", {})) if k.startswith(REACH)]


def reach(runs: list[Run], goal: str) -> list[str]:
    """`--to acc/val=0.9`: each run's first epoch whose `acc/val` reached 0.9 (at least it; a loss or error:
    at most it) and the training seconds until then (its epochs' time/epoch_s summed), as two more metrics of
    the run (None: never reached). The notes' "ReLU reaches a given accuracy in fewer epochs than tanh"."""
    from nnlab.errors import ConfigError

    metric, _, value = goal.partition("=")
    try:
        threshold = float(value)
    except ValueError:
        raise ConfigError(f"--to {goal}: write METRIC=VALUE, e.g. --to acc/val=0.9 or --to loss/val=0.3.") from None
    if metric not in SORTABLE or metric.endswith("/test"):
        epochwise = ", ".join(k for k in SORTABLE if not k.endswith("/test"))
        raise ConfigError(f"--to {goal}: {metric!r} is not measured each epoch; one of {epochwise}.")
    higher = metrics.better(metric) > 0
    sign = ">=" if higher else "<="
    keys = [f"{what}{metric}{sign}{threshold:g}" for what in REACH]
    for r in runs:
        epoch = seconds = None
        elapsed = 0.0
        for row in r.epochs():
            elapsed += row.get("time/epoch_s", 0.0) if isinstance(row.get("time/epoch_s"), (int, float)) else 0.0
            v = row.get(metric)
            if isinstance(v, (int, float)) and math.isfinite(v) and (v >= threshold if higher else v <= threshold):
                epoch, seconds = row.get("epoch"), elapsed
                break
        r.summary.setdefault("metrics", {}).update(dict(zip(keys, (epoch, seconds))))
    return keys


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]
    overrides: dict[str, str] = field(default_factory=dict)
    name: str = ""
    num: int = 0  # its job number in its sweep (Hydra's hydra.job.num): the order the sweep lists it in
    _epochs: list[dict] | None = field(default=None, repr=False, compare=False)

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    def metric(self, key: str) -> float | None:
        value = self.summary.get("metrics", {}).get(key)
        return value if isinstance(value, (int, float)) and math.isfinite(value) else None

    def epochs(self) -> list[dict]:
        from nnlab.run_files.records import read_rows

        if self._epochs is None:  # (the tables, the curves and the bands each read them)
            self._epochs = read_rows(self.path / "metrics.jsonl", having="loss/train")
        return self._epochs


def collect(root: Path) -> list[Run]:
    """Every run directory (one with a summary.json) under root, root itself included."""
    import yaml

    from nnlab.run_files.records import read_summary

    runs = []
    for summary_path in sorted(root.rglob("summary.json")):
        run_dir = summary_path.parent
        summary = read_summary(run_dir)
        if summary is None:
            continue  # being written, or damaged: not a run to compare
        overrides: dict[str, str] = {}
        try:
            items = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        except (OSError, yaml.YAMLError):
            items = None  # no overrides recorded (or unreadable): the run is named by its folder
        for item in items if isinstance(items, list) else []:
            key, _, value = str(item).partition("=")
            overrides[key.lstrip("+~")] = value
        runs.append(Run(run_dir, summary, overrides, num=_job_num(run_dir, len(runs))))
    _name(runs, root)
    return runs


def _job_num(run_dir: Path, default: int) -> int:
    """The run's job number in its sweep, read from its .hydra/hydra.yaml (`default` where there is none)."""

    try:
        found = re.search(r"^    num: (\d+)$", (run_dir / ".hydra" / "hydra.yaml").read_text(), re.M)
    except (OSError, UnicodeDecodeError):
        found = None
    return int(found.group(1)) if found else default


def _name(runs: list[Run], root: Path) -> None:
    """Name each run by the overrides that differ between runs (else by its folder), floats rounded to 4
    significant digits where that keeps the names apart."""
    keys = sorted({k for r in runs for k in r.overrides})
    differing = [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]
    for r in runs:
        parts = [f"{k}={r.overrides[k]}" for k in differing if k in r.overrides]
        r.name = ",".join(parts) if parts else (str(r.path.relative_to(root)) if r.path != root else r.path.name)
    from nnlab.views.console import printable

    for r in runs:  # names come from files: shown as they are, control characters written out
        r.name = printable(r.name)
    short = [round_floats(r.name) for r in runs]
    if len(set(short)) == len({r.name for r in runs}):
        for r, name in zip(runs, short):
            r.name = name


def short_names(runs: list[Run]) -> tuple[list[str], str]:
    """tables.short_names of the runs, floats rounded as in their folders' names (an optuna trial's
    `lr=0.005547`, not `lr=0.005547119471592123`) where that keeps them apart."""
    from nnlab.views import tables

    names, legend = tables.short_names([r.overrides for r in runs])
    rounded = [round_floats(n) for n in names]
    return (rounded if len(set(rounded)) == len(set(names)) else names), legend


def round_floats(text: str, digits: int = 4) -> str:
    """`optimizer.lr=0.005547119471592123,b=2` -> `optimizer.lr=0.005547,b=2`: each `=FLOAT` value with
    more than `digits` significant digits rounded to that many."""

    def short(m: re.Match) -> str:
        value = m.group(0)
        mantissa = value.split("e")[0].lstrip("-").replace(".", "").lstrip("0")
        return f"{float(value):.{digits}g}" if len(mantissa) > digits else value

    return re.sub(r"(?<=[=,])-?\d+\.\d+(?:e[-+]?\d+)?(?=[,\s]|$)", short, text)


@dataclass
class Setting:
    """The runs of one setting (their overrides equal but for the seed), with a band per metric."""

    name: str
    runs: list[Run]
    bands: dict[str, Any] = field(default_factory=dict)  # metric -> compare.Band (or None)
    verdict: str = ""


def settings(runs: list[Run], sort_key: str) -> list[Setting]:
    """The runs grouped by setting, best first by the mean of `sort_key`, each with its verdict."""
    from nnlab import compare

    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        groups.setdefault(compare.setting_of(r.overrides), []).append(r)
    names = [*columns(task_of(runs)), *reached(runs)]
    out = []
    for own, members in zip(compare.setting_names([dict(g) for g in groups]), groups.values()):
        name = own or (members[0].name if len(groups) > 1 else "all runs")
        out.append(Setting(name, members, {m: compare.band([r.metric(m) for r in members]) for m in names}))
    sign = -float(metrics.better(sort_key))
    out.sort(
        key=lambda st: (
            st.bands.get(sort_key) is None,
            sign * (st.bands[sort_key].mean if st.bands.get(sort_key) else 0.0),
        )
    )
    values = lambda st: [v for v in (r.metric(sort_key) for r in st.runs) if v is not None]  # noqa: E731
    best = values(out[0]) if out and out[0].bands.get(sort_key) else []
    for i, st in enumerate(out):
        st.verdict = compare.verdict(values(st), best, metrics.better(sort_key) > 0, is_best=i == 0 and bool(best))
    return out


def setting_rows(sets: list[Setting]) -> list[dict[str, Any]]:
    out = []
    for st in sets:
        row: dict[str, Any] = {"setting": st.name, "runs": len(st.runs), "ok": sum(r.status == "ok" for r in st.runs)}
        for m, b in st.bands.items():
            row.update(
                {
                    f"{m} mean": b.mean if b else None,
                    f"{m} std": b.std if b else None,
                    f"{m} ci95 low": b.low if b and b.n > 1 else None,
                    f"{m} ci95 high": b.high if b and b.n > 1 else None,
                    f"{m} n": b.n if b else 0,
                }
            )
        row["loss_curve"] = curves_of(st)
        row["verdict"] = st.verdict
        out.append(row)
    return out


def curves_of(st: Setting) -> str:
    """The loss curves' shapes of a setting's runs, commonest first: `too_low x3, good x2` (alarms.CURVES)."""
    shapes = Counter(r.summary.get("loss_curve") for r in st.runs if r.summary.get("loss_curve"))
    return ", ".join(f"{shape} x{n}" if len(st.runs) > 1 else shape for shape, n in shapes.most_common())


def _band_text(b, n_ok: int | None = None) -> str:
    """`0.8333 ± 0.1095 (n=3)`; in the terminal's table, whose "runs ok" says n, without it where they agree."""
    if b is None:
        return "-"
    if b.n == 1:
        return f"{b.mean:.4f}"
    return f"{b.mean:.4f} ± {b.half:.4f}" + ("" if b.n == n_ok else f" (n={b.n})")


def default_sort(runs: list[Run]) -> str:
    """The score on the validation split; runs trained without one (data.val_fraction=0): on the training set."""
    names = columns(task_of(runs))
    return next((k for k in (names[1], names[0]) if any(r.metric(k) is not None for r in runs)), names[1])


def sort_runs(runs: list[Run], key: str) -> list[Run]:
    """Best first by `key` (losses and errors ascending, accuracy and R^2 descending); runs without it last."""
    sign = -float(metrics.better(key))
    return sorted(runs, key=lambda r: (r.metric(key) is None, sign * (r.metric(key) or 0.0)))


def rows(runs: list[Run]) -> list[dict[str, Any]]:
    out, names = [], [*columns(task_of(runs)), *reached(runs)]
    for r in runs:
        row = {"run": r.name, "status": r.status}
        row.update({k: r.metric(k) for k in names})
        row.update(
            {
                "best_epoch": r.summary.get("best_epoch"),
                "epochs": r.summary.get("epochs_run"),
                "wall_time_s": r.summary.get("wall_time_s"),
                "loss_curve": r.summary.get("loss_curve"),
                "alarms": ",".join(a["name"] for a in r.summary.get("alarms", [])),
                "path": str(r.path),
            }
        )
        out.append(row)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.3g}"
    return str(value)


def _csv(rows: list[dict[str, Any]]) -> str:

    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def landscape_of(runs: list[Run], sets: list[Setting], sort_key: str, given: str | None = None):
    """(the map's axes, its cells, the edge advice) where the runs make a landscape (commands/landscape.py),
    else None; ConfigError where --map names what cannot be one."""
    from nnlab.commands import landscape

    found = landscape.axes(runs, given)
    if found is None:
        return None
    cells = landscape.cells(sets, *found, sort_key)
    return found, cells, landscape.advice(cells, found, runs)


def write_files(
    table: list[dict[str, Any]], runs: list[Run], out: Path, sort_key: str, land: tuple | None = None
) -> dict[str, Path]:
    """report.csv, report.md and report.png (with seeds: report_settings.csv; 2-D points: the boundary
    grid); `land`, the runs' landscape (landscape_of): report_map.png and .csv, and its section of report.md."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "report.csv", "md": out / "report.md", "png": out / "report.png"}
    from nnlab.run_files.folder import write_file

    write_file(paths["csv"], _csv(table))
    cols = [c for c in table[0] if c != "path"]
    lines = [f"# nnlab report (sorted by {sort_key})", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in cols) + " |" for row in table]
    sets = settings(runs, sort_key)
    if any(len(st.runs) > 1 for st in sets):
        srows = setting_rows(sets)
        paths["settings_csv"] = out / "report_settings.csv"
        write_file(paths["settings_csv"], _csv(srows))
        shown = [*columns(task_of(runs))[:3], "loss/val"]
        lines += [
            "",
            f"## Settings across seeds (mean ± 95% confidence interval, n; verdict against the best by {sort_key})",
            "",
            "| setting | runs ok | " + " | ".join(shown) + " | loss curve | verdict |",
            "|" + "---|" * (len(shown) + 4),
        ]
        lines += [
            f"| {st.name} | {sum(r.status == 'ok' for r in st.runs)}/{len(st.runs)} | "
            + " | ".join(_band_text(st.bands.get(c)) for c in shown)
            + f" | {curves_of(st) or '-'} | {st.verdict} |"
            for st in sets
        ]
    if land is not None:
        from nnlab.commands import landscape

        (x, y), cells, said = land
        paths.update(landscape.write(cells, (x, y), sort_key, metrics.better(sort_key) > 0, out))
        lines += ["", f"## Landscape: {sort_key} over {x.key} and {y.key}", "", "![landscape](report_map.png)", ""]
        lines += [f"- {line}" for line in said]
    write_file(paths["md"], "\n".join(lines) + "\n")
    curves_figure(runs, paths["png"], sets)
    grid = boundary_grid(sets, out / "decision_boundaries.png")
    if grid is not None:
        paths["boundaries"] = grid
    return paths


def boundary_grid(sets: list[Setting], path: Path) -> Path | None:
    """One image of every setting's decision boundary (that of its lowest seed), in the order the sweep
    lists the settings: rows by the first swept choice and columns by the other (activation x init) where
    that makes a table of at most 4 columns, else the settings wrapped 4 to a row; None where fewer than
    two runs have one (not 2-D data)."""
    from nnlab import compare
    from nnlab.views import figures
    from nnlab.views.painter import render

    def seed(r: Run) -> int:
        value = str(r.overrides.get("trainer.seed", 0))
        return int(value) if value.lstrip("-").isdigit() else 0

    if len(sets) <= MOST_ROWS:  # light runs drew none: the lowest seed of each setting draws its own now
        for st in sets:
            if not any((r.path / "decision_boundary.png").exists() for r in st.runs):
                _boundary_of(min(st.runs, key=seed))
    cells = []
    for st in sorted(sets, key=lambda st: min(r.num for r in st.runs)):
        run = min((r for r in st.runs if (r.path / "decision_boundary.png").exists()), default=None, key=seed)
        if run is not None:
            cells.append((dict(compare.setting_of(run.overrides)), run.path / "decision_boundary.png"))
    if len(cells) < 2:
        return None
    keys = [k for k in dict.fromkeys(k for c, _ in cells for k in c) if len({c.get(k) for c, _ in cells}) > 1]
    row_key, col_keys = (keys[0], keys[1:]) if keys else (None, [])
    grid = [  # a key a cell does not set is left out of its name (not `init.bias=None`)
        (
            f"{row_key}={c[row_key]}" if row_key in c else "",
            ",".join(f"{k}={c[k]}" for k in col_keys if k in c),
            str(p),
        )
        for c, p in cells
    ]
    render(
        figures.grid_figure, (grid, f"decision boundaries: {len(cells)} settings, the lowest seed of each"), str(path)
    )
    return path


def _boundary_of(run: Run) -> None:
    """A finished run of 2-D points' figures, drawn from its checkpoint (a light run's: sweep.light)."""
    from nnlab.config.validate import load_run_config
    from nnlab.data import describe
    from nnlab.errors import ConfigError
    from nnlab.training.member import draw_figures

    if run.status not in ("ok", "diverged"):
        return
    try:
        if describe(load_run_config(run.path, trains=False).data.source)[0] == "points":
            draw_figures(run.path)
    except ConfigError:
        return  # a run that cannot be read back: the grid goes without it


def curves_figure(runs: list[Run], path: Path, sets: list[Setting] | None = None) -> None:
    """Every run's validation (else training) loss and accuracy (R²) per epoch, overlaid; where seeds
    repeat a setting, each setting's mean curve with its 95% band across its seeds. Named as the tables
    name them (what differs); a setting or run that did not end well is marked, not left out."""
    from nnlab.views.figures import Curve, epoch_curve, mean_curve
    from nnlab.views.figures import curves_figure as draw
    from nnlab.views.tables import without_seed

    score = metrics.score(task_of(runs))
    split = "val" if any("loss/val" in e for r in runs for e in r.epochs()) else "train"
    names, key = short_names(runs)
    short = dict(zip((r.name for r in runs), names)) if names else {}
    curves = []
    if sets and any(len(st.runs) > 1 for st in sets):
        for st in sorted(sets, key=lambda st: min(r.num for r in st.runs)):  # in the order the sweep lists them
            members = [c for c in (epoch_curve(r.epochs(), split, score, r.name) for r in st.runs) if c is not None]
            name = without_seed(short[st.runs[0].name]) if short else st.name
            bad = [r.status for r in st.runs if r.status != "ok"]
            curve = mean_curve(members, f"{name} (n={len(st.runs)})") if members else Curve(name, (), (), ())
            curve.failed = ", ".join(f"{s} {bad.count(s)}/{len(st.runs)}" for s in dict.fromkeys(bad))
            curves.append(curve)
    else:
        for r in sorted(runs, key=lambda r: r.num):
            curve = epoch_curve(r.epochs(), split, score, short.get(r.name, r.name)) or Curve(
                short.get(r.name, r.name), (), (), ()
            )
            curve.failed = "" if r.status == "ok" else str(r.status)
            curves.append(curve)
    title = f"loss ({'validation' if split == 'val' else 'training'})"
    draw(curves, path, score, loss_title=title, log_loss=True, key=f"named by what differs: {key}" if key else "")


def sweep_summary(path: Path, brief: bool = False) -> None:
    """What a sweep ends with: its report (bands where seeds repeat; report.* written beside it; each
    setting's mean curves as a TensorBoard run, mean/SETTING), its best run's folder, and the TensorBoard
    command for the whole sweep. `brief`: the files only (nnlab doctor prints its own answer)."""
    from nnlab.views.console import console, shown

    runs = collect(path)
    if not runs:
        return
    key = default_sort(runs)
    if brief:
        ordered = sort_runs(runs, key)
        write_files(rows(ordered), ordered, path, key, landscape_of(ordered, settings(ordered, key), key))
    else:
        console.rule(f"sweep {shown(path)}: {len(runs)} run{'s' if len(runs) != 1 else ''}")
        main([str(path)])
    from nnlab.run_files.tracking import setting_means

    setting_means(path, [(st.name, [r.epochs() for r in st.runs]) for st in settings(runs, key) if len(st.runs) > 1])
    if brief:
        return
    best = next((r for r in sort_runs(runs, key) if r.metric(key) is not None and r.status == "ok"), None)
    if best is not None:
        console.print(f"best run by {key}: [bold]{shown(best.path)}[/] ({key} {best.metric(key):.4f})", soft_wrap=True)
    console.print(f"  tensorboard --logdir {shown(path)}", soft_wrap=True)


def _draw(runs: list) -> None:
    """Each finished run's own figures (run_files.draw_figures), one line per run."""
    from nnlab.errors import ConfigError
    from nnlab.training.member import draw_figures
    from nnlab.views.console import console, error, shown

    for run in runs:
        try:
            written = draw_figures(run.path)
        except ConfigError as e:
            error(f"{e} (its figures are not drawn; the report goes on)")
            continue
        console.print(f"figures of {shown(run.path)}: {', '.join(written) or 'none'}", soft_wrap=True)


VERDICTS = {"best": "best", "worse": "worse", "no finished run": "none"}  # any other: "tied"


MOST_ROWS = 20  # the rows a terminal table shows, the best first (a thousand-run landscape: the files hold them all)


def print_tables(console, runs: list[Run], sort: str, where: str) -> None:
    """The settings table (first, for a sweep of seeds) and the runs table, fitted to the terminal's width
    (tables.fit: numbers whole, the least important columns left out and named), with their legends."""
    from rich.padding import Padding
    from rich.text import Text

    from nnlab.views import tables
    from nnlab.views.console import shown

    names, notes, left_out = columns(task_of(runs)), [], []
    short, legend = short_names(runs)
    label = dict(zip(map(id, runs), short)) if short else {id(r): r.name for r in runs}
    sets = settings(runs, sort)
    banded = any(len(st.runs) > 1 for st in sets)
    more_sets, more_runs = max(0, len(sets) - MOST_ROWS), max(0, len(runs) - MOST_ROWS)
    sets, every_run, runs = sets[:MOST_ROWS], runs, runs[:MOST_ROWS]  # the best first: the rest in the files
    to = reached(runs)  # --to: its epochs and seconds, beside the sort key
    shown_cols = list(
        dict.fromkeys([sort, *to, *names[1:3], "loss/val", names[0], *(["mse/test"] if "r2/val" in names else [])])
    )
    if banded:
        band_cols = list(dict.fromkeys([sort, *to, *names[1:3], "loss/val"]))
        cells = lambda st, c: _band_text(st.bands.get(c), sum(r.status == "ok" for r in st.runs))  # noqa: E731
        cols = [
            tables.Column(
                "setting",
                [shown(tables.without_seed(label[id(st.runs[0])]) or st.name) for st in sets],
                keep=9,
                folds=True,
            ),
            tables.Column("verdict", [VERDICTS.get(st.verdict, "tied") for st in sets], keep=9),
            *(
                tables.Column(c, [cells(st, c) for st in sets], keep=8 - i, justify="right")
                for i, c in enumerate(band_cols)
            ),
            tables.Column(
                "runs ok", [f"{sum(r.status == 'ok' for r in st.runs)}/{len(st.runs)}" for st in sets], keep=4
            ),
            *(
                [tables.Column("loss curve", [shown(curves_of(st)) or "-" for st in sets], keep=3, wraps=True)]
                if any(curves_of(st) for st in sets)
                else []
            ),
        ]
        grid, dropped = tables.fit(cols, console.width, ["bold green" if st.verdict == "best" else None for st in sets])
        console.print(f"[bold]{len(sets) + more_sets} settings, best first by {sort}[/]")
        console.print(grid)
        if more_sets:
            console.print(f"  ... {more_sets} more settings in report_settings.csv (and report_map.png, report.md)")
        notes.append(
            "mean ± 95% confidence interval across seeds; verdict against the best setting (Welch's t-test, "
            "p < 0.05): worse, or tied (not distinguishable with these seeds: more may tell them apart)"
        )
        left_out += [f"from the settings {', '.join(dropped)}"] if dropped else []
    stacks = {
        json.dumps(r.summary.get("batch", {}).get("stack")): r.summary["batch"]
        for r in every_run
        if r.summary.get("batch")
    }
    cols = [
        tables.Column("run", [shown(label[id(r)]) for r in runs], keep=9, folds=True),
        *(
            tables.Column(c, [_fmt(r.metric(c)) for r in runs], keep=(9 if c == sort else 8 - i), justify="right")
            for i, c in enumerate(shown_cols)
        ),
        tables.Column("status", [shown(r.status) for r in runs], keep=7 if any(r.status != "ok" for r in runs) else 1),
        *(
            [tables.Column("loss curve", [shown(r.summary.get("loss_curve") or "-") for r in runs], keep=3)]
            if any(r.summary.get("loss_curve") for r in runs)
            else []
        ),
        tables.Column("best epoch", [_fmt(r.summary.get("best_epoch")) for r in runs], keep=3, justify="right"),
        tables.Column("wall (s)", [tables.wall(r.summary) for r in runs], keep=2, justify="right"),
        tables.Column(
            "alarms", [shown(",".join(a["name"] for a in r.summary.get("alarms", []))) for r in runs], keep=3
        ),
    ]
    grid, dropped = tables.fit(cols, console.width, [None if r.status == "ok" else "red" for r in runs])
    console.print(f"[bold]{where}, best first by {sort}[/]")
    console.print(grid)
    if more_runs:
        console.print(f"  ... {more_runs} more runs in report.csv")
    left_out += [f"from the runs {', '.join(dropped)}"] if dropped else []
    if legend:
        notes.append(f"named by what differs: {legend}")
    if stacks and "wall (s)" not in dropped:
        notes.append(
            "wall (s) of a stacked run: its share of its stack's time ("
            + "; ".join(
                f"{b['members']} runs in {tables.seconds(b['wall_time_s'])} s" for b in list(stacks.values())[:4]
            )
            + (f"; {len(stacks) - 4} more stacks" if len(stacks) > 4 else "")
            + ")"
        )
    if left_out:
        notes.append(f"left out at {console.width} columns: {'; '.join(left_out)} (every column: report.csv)")
    for note in notes:  # wrapped lines indented under their first
        console.print(Padding(Text(note), (0, 0, 0, 2), expand=False), highlight=False)


def _parser():

    parser = argparse.ArgumentParser(
        prog="nnlab report", description="Compare the runs under a folder (a sweep, or any folder of runs)."
    )
    parser.add_argument("path", type=Path, help="a sweep directory, a run directory, or any folder of runs")
    parser.add_argument(
        "--sort",
        default=None,
        choices=SORTABLE,
        help="metric to sort by (default: acc/val, r2/val for regression runs; acc/train where no run has a validation split)",
    )
    parser.add_argument("--out", type=Path, default=None, help="where report.csv/.md/.png go (default: PATH)")
    parser.add_argument(
        "--to",
        default=None,
        metavar="METRIC=VALUE",
        help="also each run's first epoch (and training seconds) where METRIC reached VALUE, e.g. --to acc/val=0.9",
    )
    parser.add_argument(
        "--map",
        default=None,
        metavar="X,Y",
        help="draw the landscape of the sort metric over these two numeric settings (report_map.png; drawn by "
        "itself where a sweep varies exactly two), with the edge advice",
    )
    parser.add_argument(
        "--figures",
        action="store_true",
        help="also draw each run's own figures (curves, decision boundary or confusion matrix, activations) "
        "into its folder: the runs of a stacked sweep draw only some (sweep.run_figures)",
    )
    return parser


def main(argv: list[str]) -> int:

    from rich.console import Console

    from nnlab.views.console import console, error, shown

    if not console.is_terminal and not os.environ.get("COLUMNS"):  # files and pipes: a whole row per line
        console = Console(width=200, highlight=False)

    parser = _parser()
    args = parser.parse_args(argv)
    if not args.path.is_dir():
        error(f"{args.path} is not a directory; give a sweep or run directory, e.g. outputs/sweeps/DATE_TIME.")
        return 2
    from nnlab.errors import unwritable

    problem = unwritable(args.out or args.path)
    if problem:
        error(
            f"the report cannot be written to {args.out or args.path}: {problem}. Choose another folder with --out DIR."
        )
        return 2
    runs = collect(args.path)
    if not runs:
        error(f"no runs under {args.path}: a run directory holds a summary.json.")
        return 2
    if args.figures:
        _draw(runs)
    from nnlab.errors import ConfigError

    try:
        if args.to:
            reach(runs, args.to)
        args.sort = args.sort or default_sort(runs)
        runs = sort_runs(runs, args.sort)
        land = landscape_of(runs, settings(runs, args.sort), args.sort, args.map)
    except ConfigError as e:
        error(str(e))
        return 2
    table = rows(runs)
    print_tables(console, runs, args.sort, f"{len(runs)} run{'s' if len(runs) != 1 else ''} under {shown(args.path)}")
    paths = write_files(table, runs, args.out or args.path, args.sort, land)
    if land is not None:
        (x, y), _, said = land
        console.print(f"[bold]landscape[/] of {args.sort} over {x.key} x {y.key}: report_map.png", soft_wrap=True)
        for line in said:
            console.print(f"  {shown(line)}", soft_wrap=True, highlight=False)
    console.print("written: " + ", ".join(shown(p) for p in paths.values()), soft_wrap=True)
    if args.to and len(runs) > 1:  # the epochs and seconds in TensorBoard's HPARAMS too
        from nnlab.run_files.tracking import overview, reach_scalars

        keys = reached(runs)
        tags = reach_scalars({r.path: {k: r.metric(k) for k in keys} for r in runs})
        overview(Path(args.path), extra=tags)
        console.print(f"TensorBoard: {', '.join(tags)} in the HPARAMS tab of {shown(args.path)}", soft_wrap=True)
    return 0
