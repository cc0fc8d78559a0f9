"""The landscape picture of a search over two numeric settings (commands/landscape.py gathers its cells):
a heatmap of the sort metric's seed mean per cell on the settings' own axes (log where log-spaced), the
best cell and those tied with it outlined, failed and diverged cells hatched and named, and beside it each
cell's 95% band width; a random or TPE search's trials as points coloured by the metric."""

from __future__ import annotations

import math

from nnlab.views.painter import save_figure

BEST, TIED = "#d62728", "white"


def _edges(values: list[float], log: bool) -> list[float]:
    """Cell edges around each value: midpoints between neighbours (geometric on a log axis)."""
    if len(values) == 1:
        v = values[0]
        return [v / 2, v * 2] if log else [v - 0.5, v + 0.5]
    if log:
        mids = [math.sqrt(a * b) for a, b in zip(values, values[1:])]
        return [values[0] ** 2 / mids[0], *mids, values[-1] ** 2 / mids[-1]]
    mids = [(a + b) / 2 for a, b in zip(values, values[1:])]
    return [2 * values[0] - mids[0], *mids, 2 * values[-1] - mids[-1]]


def draw(cells: list, x, y, metric: str, higher: bool, grid: bool, path) -> None:
    """The landscape as a PNG: the metric's panel, and beside it the band widths' where seeds repeat."""
    from matplotlib.figure import Figure

    panels = 2 if any(c.half is not None for c in cells) else 1
    fig = Figure(figsize=(6.2 * panels, 5.4), dpi=110, layout="constrained")
    axs = fig.subplots(1, panels, squeeze=False)[0]
    seeds = max(c.runs for c in cells)
    what = (
        f"the mean over {seeds} seeds per setting" if seeds > 1 else "one run per " + ("setting" if grid else "trial")
    )
    fig.suptitle(
        f"{metric}: {what} ({'higher' if higher else 'lower'} is better)\noutlined: the best (red)"
        + (" and those tied with it (Welch's t-test)" if grid and seeds > 1 else ""),
        fontsize=10,
    )
    for k, ax in enumerate(axs):
        value = (lambda c: c.mean) if k == 0 else (lambda c: c.half)
        cmap = ("viridis" if higher else "viridis_r") if k == 0 else "magma_r"  # brighter is better; darker noisier
        mesh = (_grid if grid else _points)(ax, cells, x, y, value, cmap, marks=k == 0)
        ax.set_xscale("log" if x.log else "linear")
        ax.set_yscale("log" if y.log else "linear")
        ax.set_xlabel(x.key + (" (log)" if x.log else ""))
        ax.set_ylabel(y.key + (" (log)" if y.log else ""))
        ax.set_title(metric if k == 0 else "95% band half-width across seeds (the noise)", fontsize=10)
        fig.colorbar(mesh, ax=ax, shrink=0.85)
    save_figure(fig, path)


def _grid(ax, cells: list, x, y, value, cmap: str, marks: bool):
    """A grid search's cells as a heatmap on the swept values' edges; failed cells hatched, the best and
    its ties outlined (`marks`), each cell's value written where there are few enough."""
    import numpy as np
    from matplotlib.patches import Rectangle

    xe, ye = _edges(x.values, x.log), _edges(y.values, y.log)
    values = np.full((len(y.values), len(x.values)), np.nan)
    for c in cells:
        v = value(c)
        values[y.values.index(c.y), x.values.index(c.x)] = np.nan if v is None else v
    mesh = ax.pcolormesh(xe, ye, values, cmap=cmap, shading="flat")
    for c in cells:
        i, j = x.values.index(c.x), y.values.index(c.y)
        box = (xe[i], ye[j]), xe[i + 1] - xe[i], ye[j + 1] - ye[j]
        if c.ok < c.runs:
            ax.add_patch(Rectangle(*box, fill=False, hatch="xx", edgecolor="0.35", linewidth=0))
        if marks and c.good:  # the best drawn over its tied neighbours' edges
            best = c.verdict == "best"
            color, width, z = (BEST, 2.6, 4) if best else (TIED, 1.2, 3)
            ax.add_patch(Rectangle(*box, fill=False, edgecolor=color, linewidth=width, zorder=z))
        if len(cells) <= 120:
            v = value(c)
            text = "" if v is None else f"{v:.3f}" if abs(v) < 10 else f"{v:.3g}"
            if marks and c.failed:
                text = (text + "\n" if text else "") + c.failed.split(",")[0]
            mid = lambda e, n, log: math.sqrt(e[n] * e[n + 1]) if log else (e[n] + e[n + 1]) / 2  # noqa: E731
            ax.text(
                mid(xe, i, x.log),
                mid(ye, j, y.log),
                text,
                ha="center",
                va="center",
                fontsize=6.5 if len(cells) > 40 else 8,
                color=_ink(mesh, v, dark_high=not marks),
            )
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    _ticks(ax.xaxis, x.values)
    _ticks(ax.yaxis, y.values)
    return mesh


def _points(ax, cells: list, x, y, value, cmap: str, marks: bool):
    """A search's trials where they fell, coloured by the value; the best outlined, failed ones crossed."""
    good = [c for c in cells if value(c) is not None]
    best = [marks and c.verdict == "best" for c in good]
    mesh = ax.scatter(
        [c.x for c in good],
        [c.y for c in good],
        c=[value(c) for c in good],
        cmap=cmap,
        s=46,
        edgecolors=[BEST if b else "0.2" for b in best],
        linewidths=[2.2 if b else 0.5 for b in best],
    )
    bad = [c for c in cells if value(c) is None]
    if bad:
        ax.scatter([c.x for c in bad], [c.y for c in bad], marker="x", color="0.3", s=40, label="failed")
        ax.legend(loc="upper right", fontsize=8)
    return mesh


def _ink(mesh, value: float | None, dark_high: bool) -> str:
    """Text that reads on its cell: white on the colormap's dark end, black on its light end."""
    if value is None:
        return "0.15"
    level = float(mesh.norm(value))
    dark = level > 0.55 if dark_high else (level < 0.45) != (mesh.cmap.name.endswith("_r"))
    return "white" if dark else "black"


def _ticks(axis, values: list[float]) -> None:
    """A tick at each swept value (at most 8 labelled, slanted where more than 5), as the runs name it."""
    from matplotlib.ticker import FixedLocator, NullLocator

    shown = values if len(values) <= 8 else values[:: math.ceil(len(values) / 8)]
    axis.set_major_locator(FixedLocator(shown))
    axis.set_minor_locator(NullLocator())
    slanted = len(shown) > 5 and axis.axis_name == "x"
    axis.set_ticklabels([f"{v:.3g}" for v in shown], fontsize=8, rotation=35 if slanted else 0)
