"""The landscape of a search over two numeric settings (notes: search two hyperparameters at once, in log
space, coarse to fine, and "make sure the best value is not at the edge of the range").

Where a sweep varies two numeric settings (or `nnlab report PATH --map X,Y` names them), its settings are
the cells of a map: each cell's seed mean of the sort metric, its 95% band, its verdict against the best
(views/landscape.py draws it: report_map.png, report_map.csv, a section of report.md, the sweep's
TensorBoard overview). A grid search fills a grid; a random or TPE search (every trial its own values) is
drawn as points. And where the best setting, or one tied with it, sits at the edge of a swept range, the
advice says which way to widen it, with the command line of the next sweep; where it sits inside, the
next, finer sweep around it.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = "trainer.seed"


@dataclass
class Axis:
    key: str
    values: list[float]  # the distinct values swept, ascending

    @property
    def log(self) -> bool:
        """Log-spaced: positive values spanning a factor of 10 or more (a rate, a weight decay)."""
        return self.values[0] > 0 and self.values[-1] / self.values[0] >= 10


@dataclass
class Cell:
    x: float
    y: float
    name: str  # the setting's name, as the report's tables say it
    mean: float | None  # the sort metric's seed mean (None: no run ended well)
    half: float | None  # its 95% interval's half width (None: one seed)
    runs: int
    ok: int
    verdict: str  # report's: best, worse, or not distinguishable (tied with the best)
    failed: str  # `diverged 3/5` where runs did not end well

    @property
    def good(self) -> bool:
        """The best, or tied with it."""
        return self.verdict == "best" or self.verdict.startswith("not distinguishable")


def number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def axes(runs: list, given: str | None = None) -> tuple[Axis, Axis] | None:
    """The map's two axes: the settings `given` ("X,Y"), else the two numeric settings the runs vary where
    nothing else but the seed varies. None: no map (ConfigError where `given` names what cannot be one)."""
    from nnlab.errors import ConfigError

    keys = sorted({k for r in runs for k in r.overrides} - {SEED})
    varied = [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]
    numeric = [k for k in varied if all(number(r.overrides.get(k)) is not None for r in runs)]
    if given:
        names = [k.strip() for k in given.split(",")]
        if len(names) != 2 or any(k not in numeric for k in names):
            raise ConfigError(
                f"--map {given}: two settings the runs vary, each a number in every run, as X,Y; here: "
                f"{', '.join(numeric) or 'none'}."
            )
    elif len(numeric) == 2 and len(varied) == 2:
        names = numeric
    else:
        return None
    x, y = names
    return tuple(Axis(k, sorted({number(r.overrides[k]) for r in runs})) for k in (x, y))  # type: ignore[return-value]


def cells(sets: list, x: Axis, y: Axis, sort_key: str) -> list[Cell]:
    """One cell per setting (report.Setting: its runs share every override but the seed): the band of the
    runs that ended well (a diverged seed's last value is not the setting's), the report's verdict."""
    from nnlab.compare import band

    out = []
    for st in sets:
        first = st.runs[0].overrides
        bad = [r.status for r in st.runs if r.status != "ok"]
        b = band([r.metric(sort_key) for r in st.runs if r.status == "ok"])
        out.append(
            Cell(
                number(first.get(x.key)),
                number(first.get(y.key)),
                st.name,
                b.mean if b else None,
                b.half if b and b.n > 1 else None,
                len(st.runs),
                len(st.runs) - len(bad),
                st.verdict,
                ", ".join(f"{s} {bad.count(s)}/{len(st.runs)}" for s in dict.fromkeys(bad)),
            )
        )
    return out


def is_grid(found: list[Cell], x: Axis, y: Axis) -> bool:
    """A grid search: every (x, y) pair of the swept values is a cell (a random search's are scattered)."""
    return len({(c.x, c.y) for c in found}) == len(x.values) * len(y.values) and len(found) > 1


def advice(found: list[Cell], axes_: tuple[Axis, ...], runs: list) -> list[str]:
    """Where the best setting or one tied with it sits at the edge of a swept range: which setting and which
    way to widen it; else the next, finer sweep around the best. Each with the next sweep's command line: a
    grid's values, or for a random or TPE search (not a grid) the intervals of a finer search
    (hparams_search=fine) around the good trials, widened past an edge they reach."""
    if not is_grid(found, *axes_):
        return _search_advice(found, axes_, runs)
    ranked = [c for c in found if c.mean is not None]
    best = next((c for c in ranked if c.verdict == "best"), ranked[0] if ranked else None)
    if best is None:
        return []
    means = [c.mean for c in ranked]
    near = 0.25 * (max(means) - min(means))  # tied, and in the top quarter of what the map spans: few seeds tie much
    good = [c for c in ranked if c.good and abs(c.mean - best.mean) <= near] or [best]
    said, nxt = [], {}
    for i, axis in enumerate(axes_):
        if len(axis.values) < 2:
            continue
        at = [(c.x, c.y)[i] for c in good]
        value = (best.x, best.y)[i]
        if axis.values[0] in at or axis.values[-1] in at:
            up = axis.values[-1] in at
            edge = axis.values[-1] if up else axis.values[0]
            who = "the best" if edge == value else "a setting tied with the best"
            said.append(
                f"{axis.key}: {who} ({_fmt(edge)}) is at the {'top' if up else 'bottom'} of the range swept "
                f"({_fmt(axis.values[0])}..{_fmt(axis.values[-1])}): widen it {'upwards' if up else 'downwards'}"
            )
            nxt[axis.key] = _wider(axis, up)
        else:
            nxt[axis.key] = _finer(axis, value)
    if not said:
        said.append(
            f"the best ({_where(best, axes_)}) is inside the ranges swept: the next sweep is a finer one around it"
        )
    return [*said, f"next: {command(runs, nxt)}"]


def _search_advice(found: list[Cell], axes_: tuple[Axis, ...], runs: list) -> list[str]:
    """advice() for a search: a trial in the outer tenth of a sampled range (log where log-spaced) is at its
    edge; the next search's interval spans the good trials (the best and those tied with it near it), one
    step (a quarter of the range) wider on each side, more where they reach an edge."""
    ranked = sorted((c for c in found if c.mean is not None), key=lambda c: c.mean, reverse=True)
    if not ranked:
        return []
    best = next((c for c in ranked if c.verdict == "best"), ranked[0])
    top = ranked[: max(1, len(ranked) // 5)]  # one seed a trial ties everything: the best fifth is what counts
    said, parts = [], []
    for i, axis in enumerate(axes_):
        f = math.log10 if axis.log else (lambda v: v)
        lo, hi = f(axis.values[0]), f(axis.values[-1])
        at = [f(c.x if i == 0 else c.y) for c in top]
        span = (hi - lo) or 1.0
        new_lo, new_hi = min(at) - span / 4, max(at) + span / 4
        for edge, near in (("top", max(at) >= hi - span / 10), ("bottom", min(at) <= lo + span / 10)):
            if near:
                said.append(
                    f"{axis.key}: good trials reach the {edge} of the range sampled ({_fmt(axis.values[0])}.."
                    f"{_fmt(axis.values[-1])}): widen it {'upwards' if edge == 'top' else 'downwards'}"
                )
                new_lo, new_hi = (new_lo, new_hi + span / 2) if edge == "top" else (new_lo - span / 2, new_hi)
        back = (lambda v: 10**v) if axis.log else (lambda v: v)
        interval = f"interval({_fmt(back(new_lo))}, {_fmt(back(new_hi))})"
        parts.append(f"'hydra.sweeper.params.{axis.key}={'tag(log, ' + interval + ')' if axis.log else interval}'")
    if not said:
        said.append(
            f"the best trial ({_where(best, axes_)}) is inside the ranges sampled: the next search is a finer one"
        )
    shared = _shared(runs, {a.key for a in axes_} | {"hparams_search"})
    return [*said, "next: " + " ".join(["nnlab train -m hparams_search=fine", *map(_quoted, shared), *parts])]


def _where(cell: Cell, axes_: tuple[Axis, ...]) -> str:
    return f"{axes_[0].key}={_fmt(cell.x)}, {axes_[1].key}={_fmt(cell.y)}"


def _step(axis: Axis) -> float:
    """The spacing of the swept values: a factor (log-spaced) or a difference."""
    v = axis.values
    if axis.log:
        return (v[-1] / v[0]) ** (1 / (len(v) - 1))
    return (v[-1] - v[0]) / (len(v) - 1)


def _wider(axis: Axis, up: bool) -> list[float]:
    """Four values from the edge outwards, at the sweep's own spacing (and the edge itself)."""
    s, edge = _step(axis), axis.values[-1] if up else axis.values[0]
    if axis.log:
        return [edge * s ** (k if up else -k) for k in range(4)][:: 1 if up else -1]
    return [edge + (k if up else -k) * s for k in range(4)][:: 1 if up else -1]


def _finer(axis: Axis, best: float) -> list[float]:
    """Five values between the best's neighbours: the same search, zoomed in (coarse to fine)."""
    i = axis.values.index(best)
    lo, hi = axis.values[max(0, i - 1)], axis.values[min(len(axis.values) - 1, i + 1)]
    if axis.log:
        return [lo * (hi / lo) ** (k / 4) for k in range(5)]
    return [lo + (hi - lo) * k / 4 for k in range(5)]


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def command(runs: list, values: dict[str, list[float]]) -> str:
    """The next sweep's command line: what every run shares, the seeds, and the new values."""
    seeds = sorted({r.overrides[SEED] for r in runs if SEED in r.overrides}, key=lambda s: number(s) or 0)
    parts = _shared(runs, set(values))
    parts += [f"{SEED}={','.join(seeds)}"] if seeds else []
    parts += [f"{k}={','.join(_fmt(v) for v in vs)}" for k, vs in values.items()]
    return "nnlab train -m " + " ".join(_quoted(p) for p in parts)


def _shared(runs: list, leave_out: set[str]) -> list[str]:
    """The overrides every run gives alike (`key=value`), but the seed and `leave_out`."""
    return [
        f"{k}={v}"
        for k, v in runs[0].overrides.items()
        if k not in leave_out and k != SEED and all(r.overrides.get(k) == v for r in runs)
    ]


def _quoted(part: str) -> str:
    return f"'{part}'" if any(ch in part for ch in "[]()*? ") else part


def write(found: list[Cell], axes_: tuple[Axis, Axis], sort_key: str, higher: bool, out: Path) -> dict[str, Path]:
    """report_map.png (views/landscape.py) and report_map.csv: the cells."""
    from nnlab.run_files.folder import write_file
    from nnlab.views.landscape import draw

    x, y = axes_
    grid = is_grid(found, x, y)
    paths = {"map": out / "report_map.png", "map_csv": out / "report_map.csv"}
    draw(found, x, y, sort_key, higher, grid, paths["map"])
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow([x.key, y.key, "setting", f"{sort_key} mean", f"{sort_key} ci95 half", "runs", "ok", "verdict"])
    for c in found:
        w.writerow([c.x, c.y, c.name, c.mean, c.half, c.runs, c.ok, c.verdict])
    write_file(paths["map_csv"], text.getvalue())
    return paths
