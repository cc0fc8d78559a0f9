"""Every figure nnlab draws, for a run and for a report: training curves, the activations per layer,
decision boundaries and regression fits (as RGB tensors, for TensorBoard). Matplotlib's object API (no
pyplot: no global state, no GUI backend) and torch are imported when a figure is drawn, so that `nnlab
report` draws its curves without loading torch.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnlab.nn import eval_mode

# Class colours (RGB 0-255): tab10.
TAB10 = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


def palette():
    """TAB10 as a float tensor (N, 3)."""
    import torch

    return torch.tensor(TAB10, dtype=torch.float32)


def activations_figure(outputs: dict, title: str = ""):
    """The classic 'activations per layer' plot: one histogram per hidden layer, with mean and std, all on
    the same x-axis (so that activations shrinking towards zero layer by layer, or piling up at a
    saturated tanh's -1 and 1, show as such). `outputs`: layer name -> activations (CPU tensors or arrays)."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    n = max(1, len(outputs))
    rows = -(-n // 4)  # at most 4 panels a row, rows balanced (6 layers: 3 + 3, not a 1728x270 strip)
    cols = -(-n // rows)
    fig = Figure(figsize=(3.3 * cols, 2.9 * rows + 0.5), dpi=90)
    axes = fig.subplots(
        rows, cols, sharex=True, sharey=True, squeeze=False
    )  # one x-axis: a layer that collapses shows it
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax, (name, a) in zip(axes.ravel(), outputs.items()):
        values = np.asarray(a, dtype=np.float64).ravel()
        lo, hi = float(values.min()), float(values.max())
        span = (lo, hi) if hi - lo > 1e-4 * max(1.0, abs(lo)) else (lo - 0.5, lo + 0.5)  # identical units: one spike
        counts, edges = np.histogram(values, bins=40, range=span)
        ax.stairs(counts, edges, fill=True, color="tab:blue")
        ax.set_title(
            f"{name}\nmean {values.mean():.3f} std {values.std(ddof=1) if values.size > 1 else 0.0:.3f}", fontsize=10
        )
        ax.tick_params(labelsize=9)
    fig.suptitle(title or "hidden-layer activations on the probe batch", fontsize=11)
    fig.tight_layout()
    return fig


@dataclass
class Curve:
    """One line of a curves figure: a label, and per epoch the loss and the score (accuracy or R²)."""

    label: str
    epochs: Sequence[int]
    loss: Sequence[float]
    score: Sequence[float]
    style: str = "-"
    band: tuple[Sequence[tuple[float, float]], Sequence[tuple[float, float]]] | None = None  # (low, high) per epoch
    failed: str = ""  # how its runs ended where not all well ("diverged 2/2"): marked, never dropped


BAND = "bands: 95% confidence interval of the mean over seeds"  # one rule, as the tables' ± (compare.band)


def epoch_curve(rows: list[dict], split: str, score: str, label: str, style: str = "-") -> Curve | None:
    """The Curve of one split ("train", "val") from a run's metrics.jsonl rows; None when it has no point."""
    pts = [
        (r["epoch"], _number(r[f"loss/{split}"]), _number(r.get(f"{score}/{split}")))
        for r in rows
        if f"loss/{split}" in r and isinstance(r.get("epoch"), int) and not isinstance(r.get("epoch"), bool)
    ]  # a row a file may hold without one
    return Curve(label, *zip(*pts), style=style) if pts else None


def mean_curve(curves: list[Curve], label: str) -> Curve:
    """The mean of several runs' curves per epoch (over the runs that reached it), with the band the tables
    give a mean: its 95% confidence interval over the runs (compare.band)."""
    from nnlab.compare import band

    epochs = sorted({e for c in curves for e in c.epochs})
    loss, score, loss_band, score_band = [], [], [], []
    for e in epochs:
        at = [(c.loss[c.epochs.index(e)], c.score[c.epochs.index(e)]) for c in curves if e in c.epochs]
        for values, mean, bands in (([v for v, _ in at], loss, loss_band), ([v for _, v in at], score, score_band)):
            b = band([v for v in values if isinstance(v, (int, float))])
            mean.append(math.nan if b is None else b.mean)
            bands.append((math.nan, math.nan) if b is None or b.n < 2 else (b.low, b.high))
    return Curve(label, tuple(epochs), tuple(loss), tuple(score), band=(tuple(loss_band), tuple(score_band)))


def _number(v) -> float:
    return v if isinstance(v, (int, float)) else math.nan  # NaN/Inf were written as strings


def run_curves(run_dir, kind: str) -> None:
    """RUN/curves.png: the run's train and val loss and score per epoch."""

    from nnlab import metrics
    from nnlab.run_files import records

    epochs = records.read_rows(Path(run_dir) / "metrics.jsonl", having="loss/train")
    score = metrics.score(kind)
    curves = [epoch_curve(epochs, split, score, split, style) for split, style in (("train", "-"), ("val", "--"))]
    curves_figure([c for c in curves if c is not None], Path(run_dir) / "curves.png", score)


STYLES = ("-", "--", "-.", ":")  # curves that coincide (zeros and normal_small) both show: dashes over a line


def curves_figure(
    curves: list[Curve], path, score: str = "acc", loss_title: str = "loss", log_loss: bool = False, key: str = ""
):
    """Loss and score (accuracy, or R² for regression) per epoch, side by side, one line per Curve,
    saved as a PNG: a run's train and val curves (curves.png), or many runs' (report.png). Made for a
    slide: text of 10 pt and more, the legend below the plots (`key`: what its names are), a band's meaning
    said above them, a curve whose runs failed marked (its last point an x, its state in the legend) and
    never dropped, a log axis labelled in plain numbers. Returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    from nnlab.metrics import LABELS

    many = len(curves) > 2
    columns = 1 if len(curves) <= 3 else 2 if len(curves) <= 10 else 3
    legend_rows = 0 if not many else -(-len(curves) // columns)
    fig = Figure(figsize=(11, 4.2 + 0.24 * legend_rows) if many else (10, 4), dpi=100)
    ax_loss, ax_score = fig.subplots(1, 2)
    handles = _draw_curves(ax_loss, ax_score, curves, score, many)
    ax_loss.set(xlabel="epoch", ylabel="loss", title=loss_title, yscale="log" if log_loss else "linear")
    ax_score.set(xlabel="epoch", ylabel=LABELS[score], title=LABELS[score])
    if log_loss:
        _log_axis(ax_loss, curves)
    last = max((max(c.epochs) for c in curves if len(c.epochs)), default=1)
    for ax in (ax_loss, ax_score):
        _epoch_axis(ax, last)
    banded = any(c.band is not None for c in curves)
    if many:
        fig.legend(
            handles=handles, loc="lower center", ncol=columns, fontsize=10, frameon=False, title=key, title_fontsize=10
        )
    elif curves:
        ax_score.legend(handles=handles, loc="best", fontsize=10)
    if banded:
        fig.text(0.99, 0.99, BAND, ha="right", va="top", fontsize=10, color="0.3")
    fig.tight_layout(
        rect=(0, (0.24 * legend_rows + 0.2) / (4.2 + 0.24 * legend_rows) if many else 0, 1, 0.95 if banded else 1)
    )
    from nnlab.views.painter import save_figure

    save_figure(fig, path)
    return fig


def _draw_curves(ax_loss, ax_score, curves: list[Curve], score: str, many: bool) -> list:
    """Each curve on both axes (its band within what the metric can be), its legend handle; coinciding
    curves told apart by their dashes, a failed one's last point an x."""
    from matplotlib.lines import Line2D

    from nnlab.metrics import within

    handles, drawn = [], 0
    for c in curves:
        style = c.style if not many else STYLES[drawn % len(STYLES)]
        drawn += bool(len(c.epochs))
        dots = {"marker": "o"} if len(c.epochs) <= 3 else {}  # a run of 1-3 epochs: its points, not an empty frame
        label = c.label + (f": {c.failed}" if c.failed else "")
        (line,) = ax_loss.plot(c.epochs, c.loss, style, label=label, linewidth=2, **dots)
        color = line.get_color()
        ax_score.plot(c.epochs, c.score, style, color=color, linewidth=2, **dots)
        if c.failed and len(c.epochs):  # where the runs stopped
            for ax, ys in ((ax_loss, c.loss), (ax_score, c.score)):
                ax.plot(c.epochs[-1:], ys[-1:], "x", color=color, markersize=10, markeredgewidth=2)
        handles.append(Line2D([], [], linestyle=style, marker="x" if c.failed else None, color=color, label=label))
        if c.band is not None:  # a loss above 0, an accuracy in [0, 1]
            for ax, b, metric in ((ax_loss, c.band[0], "loss"), (ax_score, c.band[1], score)):
                low, high = [within(metric, lo) for lo, _ in b], [within(metric, hi) for _, hi in b]
                ax.fill_between(c.epochs, low, high, color=color, alpha=0.2, linewidth=0)
    return handles


def _log_axis(ax, curves: list[Curve]) -> None:
    """The loss's log axis: the range the curves need (a band reaching towards 0 cut at a third of the
    lowest), labelled 0.6, not 6x10^-1."""
    from matplotlib.ticker import FuncFormatter

    means = [v for c in curves for v in c.loss if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    if means:
        top = max(means + [hi for c in curves if c.band for _, hi in c.band[0] if math.isfinite(hi)])
        ax.set_ylim(min(means) / (3 if any(c.band for c in curves) else 1.3), top * 1.2)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.3g}" if _few_ticks(ax) else ""))


def _epoch_axis(ax, last: int) -> None:
    """Whole epochs (one to three: each, with a margin, not 0.945..1.050), a grid, text of 10 pt and more."""
    from matplotlib.ticker import MaxNLocator

    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if last <= 3:
        ax.set_xlim(0.5, last + 0.5)
        ax.set_xticks(range(1, last + 1))
    ax.tick_params(labelsize=10)
    ax.title.set_fontsize(12)
    ax.xaxis.label.set_fontsize(11)
    ax.yaxis.label.set_fontsize(11)


def _few_ticks(ax) -> bool:
    """A log axis spanning under about a decade and a half: its minor ticks carry labels (0.2, 0.3, ...)."""
    lo, hi = ax.get_ylim()
    return lo > 0 and hi / lo < 30


def decision_boundary(model, predict, x, y, size: int = 192, every: int = 1):
    """An RGB uint8 image (3, size, size): the predicted class over the plane in a light tint, and
    the points in their true class's colour. x: (N, 2) as the model sees them. `every`: the model is
    asked every `every` pixels (each answer tints an every x every block): the images TensorBoard shows
    during training take every=2, a quarter of the forward passes (the plane is most of their cost)."""
    import torch

    with torch.no_grad():
        return _decision_boundary(model, predict, x, y, size, every)


def plane_extent(x) -> tuple:
    """(lo, hi): the corners of the plane a decision boundary image covers (the points, 10% margin)."""
    lo, hi = x.min(0).values, x.max(0).values
    pad = (hi - lo) * 0.1 + 1e-3
    return lo - pad, hi + pad


def _decision_boundary(model, predict, x, y, size: int, every: int = 1):
    points = boundary_plane(x, size, every)
    with eval_mode(model):
        return paint_boundary(predict(model(points)), x, y, size, every)


def boundary_plane(x, size: int = 192, every: int = 1):
    """The plane's points a decision boundary image asks the model about (one every `every` pixels)."""
    lo, hi = plane_extent(x)
    return _plane(lo, hi, -(-size // every))


def paint_boundary(pred, x, y, size: int = 192, every: int = 1):
    """decision_boundary's image from the model's predicted classes over boundary_plane(x, size, every)."""
    import torch

    colours = palette()
    lo, hi = plane_extent(x)
    coarse = -(-size // every)
    pred = pred.cpu() % len(colours)
    if every > 1:
        pred = (
            pred.reshape(coarse, coarse)
            .repeat_interleave(every, 0)
            .repeat_interleave(every, 1)[:size, :size]
            .reshape(-1)
        )
    image = (colours[pred] * 0.35 + 255 * 0.65).reshape(size, size, 3)
    row, col = _pixels(x, lo, hi, size)
    colour = colours[y.cpu() % len(colours)] * 0.8
    for dr in (-1, 0, 1):  # 3x3 dots
        for dc in (-1, 0, 1):
            image[(row + dr).clamp(0, size - 1), (col + dc).clamp(0, size - 1)] = colour
    return image.round().to(torch.uint8).permute(2, 0, 1)


def boundary_figure(image, extent: tuple, title: str):
    """A decision boundary (an RGB array (H, W, 3) as decision_boundary draws it: the predicted class as a
    tint, the training points in their class's colour) with axes in the model's input coordinates."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.4), dpi=100)
    ax = fig.subplots()
    ax.imshow(image, extent=extent, interpolation="nearest", aspect="auto")
    ax.set(xlabel="x1 (standardized, as the model sees it)", ylabel="x2")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def confusion_figure(matrix: list[list[int]], title: str, names: Sequence[str] | None = None):
    """A confusion matrix: rows the true class, columns the predicted one, each cell its count (the
    colour: the share of its row), the diagonal the correct predictions."""
    import numpy as np
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=float)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(m)
    names = list(names) if names else [str(i) for i in range(n)]
    fig = Figure(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n), dpi=100)
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{int(m[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set(xticks=range(n), yticks=range(n), xticklabels=names, yticklabels=names, xlabel="predicted", ylabel="true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def examples_figure(images, titles: Sequence[str], title: str):
    """A grid of images (N, H, W, C floats in [0, 1]; C = 1 is drawn in grey), each with its title."""
    from matplotlib.figure import Figure

    n = max(1, len(images))
    cols = min(n, 5)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.6 * cols, 1.75 * rows + 0.4), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, name in zip(axes, images, titles):
        ax.imshow(
            image[..., 0] if image.shape[-1] == 1 else image,
            cmap="gray" if image.shape[-1] == 1 else None,
            vmin=0,
            vmax=1,
        )
        ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def grid_figure(cells: list[tuple[str, str, str]], title: str, per_row: int = 4):
    """PNG files laid out in a grid: cells are (row label, column label, path), rows and columns in the
    order their labels first appear. Where that is no table of at most `per_row` columns, every one of the
    rows and columns filled (one swept key; three), the cells wrap `per_row` to a row, each titled by its
    labels. Text of 9 pt and more; the title wrapped to the figure's width."""

    from matplotlib.figure import Figure
    from matplotlib.image import imread

    rows = list(dict.fromkeys(r for r, _, _ in cells))
    cols = list(dict.fromkeys(c for _, c, _ in cells))
    table = len(cols) <= per_row and len(rows) * len(cols) == len(cells) and len(rows) > 1 and len(cols) > 1
    if table:
        place = {(r, c): (rows.index(r), cols.index(c)) for r, c, _ in cells}
        n_rows, n_cols = len(rows), len(cols)
    else:  # balanced rows: 5 cells as 3 + 2, 7 as 4 + 3, never 4 + 1
        n_rows = -(-len(cells) // per_row)
        n_cols = -(-len(cells) // n_rows)
        place = {(r, c): divmod(i, n_cols) for i, (r, c, _) in enumerate(cells)}
    width = 2.9 * n_cols + (0.5 if table else 0.2)
    lines = textwrap.wrap(title, max(20, int(width * 72 / (11 * 0.55))))
    fig = Figure(figsize=(width, 3.0 * n_rows + 0.25 + 0.25 * len(lines)), dpi=100)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    wrap = lambda text: label_lines(text, 30)  # noqa: E731  (a label as wide as its cell)
    for r, c, path in cells:
        i, j = place[(r, c)]
        axes[i, j].imshow(imread(path))
        if not table:
            axes[i, j].set_title(wrap(", ".join(x for x in (r, c) if x)), fontsize=9)
    if table:
        for j, c in enumerate(cols):
            axes[0, j].set_title(wrap(c), fontsize=9)
        for i, r in enumerate(rows):
            axes[i, 0].set_ylabel(wrap(r), fontsize=9)
    fig.suptitle("\n".join(lines), fontsize=11)
    fig.tight_layout()
    return fig


def label_lines(text: str, width: int) -> str:
    """A label in lines of about `width` characters, broken after a `,` or a space, never inside a name
    (`optimizer.lr=0.01` stays whole)."""
    return "\n".join(
        textwrap.wrap(text.replace(",", ", "), width, break_long_words=False, break_on_hyphens=False)
    ).replace(", ", ",")


def regression_fit(model, link, x, y, size: int = 192):
    """An RGB uint8 image (3, size, size) of a regression fit, as the model sees the inputs.
    1-D inputs: the training points (grey) and the predicted curve (blue) over their range.
    2-D inputs: the predicted surface as a blue (low) to red (high) map, with the points in the same colours."""
    import torch

    with torch.no_grad(), eval_mode(model):
        return _regression_fit(model, link, x, y, size)


def _regression_fit(model, link, x, y, size: int):
    import torch

    image = torch.full((size, size, 3), 255.0)
    x, y = x.float(), y.float()[:, 0]
    if x.shape[1] == 1:
        lo, hi = x.min().item(), x.max().item()
        grid = torch.linspace(lo, hi, size, device=x.device)[:, None]
        curve = link(model(grid)).float()[:, 0].cpu()
        med = y.median().item()
        spread = 4 * 1.4826 * (y - med).abs().median().item()  # 4 robust standard deviations: outliers sit on the edge
        y_lo, y_hi = min(curve.min().item(), med - spread), max(curve.max().item(), med + spread)
        pad = (y_hi - y_lo) * 0.05 + 1e-6
        y_lo, y_hi = y_lo - pad, y_hi + pad

        def rows(v):
            return ((y_hi - v) / (y_hi - y_lo) * (size - 1)).round().long().clamp(0, size - 1)

        col = ((x[:, 0].cpu() - lo) / (hi - lo + 1e-12) * (size - 1)).round().long()
        row = rows(y.cpu())
        for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):  # 2x2 dots
            image[(row + dr).clamp(0, size - 1), (col + dc).clamp(0, size - 1)] = torch.tensor([130.0, 130.0, 130.0])
        r, c = rows(curve), torch.arange(size)
        for d in (-1, 0, 1):  # a 3-pixel line
            image[(r + d).clamp(0, size - 1), c] = torch.tensor([31.0, 119.0, 180.0])
    else:
        lo, hi = x.min(0).values, x.max(0).values
        pred = link(model(_plane(lo, hi, size))).float()[:, 0].cpu()
        v_lo, v_hi = y.quantile(0.01).item(), y.quantile(0.99).item()

        def colour(v):  # blue -> white -> red
            t = ((v - v_lo) / (v_hi - v_lo + 1e-12)).clamp(0, 1)[:, None]
            blue, white, red = (
                torch.tensor([59.0, 76, 192]),
                torch.tensor([240.0, 240, 240]),
                torch.tensor([180.0, 4, 38]),
            )
            return torch.where(t < 0.5, blue + (white - blue) * 2 * t, white + (red - white) * (2 * t - 1))

        image = colour(pred).reshape(size, size, 3)
        row, col = _pixels(x, lo, hi, size)
        image[row, col] = colour(y.cpu()) * 0.7
    return image.round().to(torch.uint8).permute(2, 0, 1)


def _plane(lo, hi, size: int):
    """The (size * size, 2) points of an image of the plane from lo to hi, row by row (rows top-down)."""
    import torch

    xs = torch.linspace(lo[0].item(), hi[0].item(), size, device=lo.device)
    ys = torch.linspace(hi[1].item(), lo[1].item(), size, device=lo.device)
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1).reshape(-1, 2)


def _pixels(x, lo, hi, size: int):
    """(row, col) of 2-D points in that image, on the CPU."""
    col = ((x[:, 0] - lo[0]) / (hi[0] - lo[0]) * (size - 1)).round().long().cpu()
    row = ((hi[1] - x[:, 1]) / (hi[1] - lo[1]) * (size - 1)).round().long().cpu()
    return row, col
