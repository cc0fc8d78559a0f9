"""Tables for the terminal that never cut a number, at any width from 60 columns.

Each column says how much it matters (`keep`: the lower, the sooner it goes). Numbers are never wrapped
or cut: where the table is wider than the terminal, the least important columns are left out (and the
caller says which: `fit` returns them); only a column of names may fold onto a second line, as the last
resort. Names are shortened to what differs between the rows (`he_normal s2` for `init=he_normal,
trainer.seed=2`), with the key for the reader in `short_names`' legend.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.table import Table

from nnlab.compare import SEED_KEYS  # shown as s2 (trainer.seed), d2 (data.source.seed)

PADDING = 3  # a column's share of the borders and padding of rich's default box: "│ x " around each cell


@dataclass
class Column:
    header: str
    cells: list[str]
    keep: int = 0  # 0: dropped first; the highest: kept longest
    folds: bool = False  # a column of names: may fold onto more lines where nothing else is left to drop
    justify: str = "left"
    wraps: bool = False  # a column of words (not names, not numbers): wraps between them before any column goes

    @property
    def width(self) -> int:
        """The width it needs: a column that wraps, its longest word; any other, its longest cell."""
        if self.wraps:
            return max(cell_len(w) for text in [self.header, *self.cells] for w in text.split() or [""])
        return max([cell_len(self.header), *(cell_len(c) for c in self.cells)])


def fit(columns: list[Column], width: int, styles: list | None = None) -> tuple[Table, list[str]]:
    """A rich Table of `columns` that fits `width`, and the headers of the columns left out for it."""
    shown, top = list(columns), max(c.keep for c in columns)
    while sum(c.width + PADDING for c in shown) + 1 > width:
        candidates = [c for c in shown if not c.folds and c.keep < top]  # the top ones stay; names fold instead
        if not candidates:
            break
        shown.remove(min(candidates, key=lambda c: c.keep))
    table = Table(
        header_style="bold"
    )  # (its title: a line of its own above it, wrapped to the terminal, not the table)
    spare, room = max(0, width - 1 - sum(c.width + PADDING for c in shown)), {}
    for c in shown:  # the room left, to the columns that wrap, each up to its one-line width
        if c.wraps:
            full = max(cell_len(t) for t in [c.header, *c.cells])
            room[c.header] = min(full - c.width, spare)
            spare -= room[c.header]
    for c in shown:
        table.add_column(
            c.header,
            justify=c.justify,
            no_wrap=not (c.folds or c.wraps),
            overflow="fold" if c.folds or c.wraps else "ellipsis",
            min_width=None if c.folds else c.width,
            max_width=c.width + room[c.header] if c.wraps else None,  # (rich's own sharing can overshoot)
        )
    for i in range(len(columns[0].cells)):
        table.add_row(*(c.cells[i] for c in shown), style=(styles or [None] * (i + 1))[i])
    return table, [c.header for c in columns if c not in shown]


def short_names(overrides: list[dict[str, str]]) -> tuple[list[str], str]:
    """Each row named by the overrides in which the rows differ, as short as stays unambiguous: a config
    group's choice by its value (`he_normal`), a seed as `s2`, any other key by its last part
    (`lr=0.01`); and the legend that says which key is which. ([], "") where that would not keep the
    names apart."""
    keys = sorted({k for o in overrides for k in o})
    differing = [k for k in keys if len({o.get(k) for o in overrides}) > 1]
    seeds = [k for k in differing if k in SEED_KEYS]
    rest = [k for k in differing if k not in SEED_KEYS]

    def part(k: str, v: str) -> str:
        if k in SEED_KEYS:
            return f"{'s' if k == 'trainer.seed' else 'd'}{v}"
        return v if "." not in k else f"{k.rsplit('.', 1)[1]}={v}"

    names = [" ".join(part(k, o[k]) for k in [*rest, *seeds] if k in o) for o in overrides]
    if len(set(names)) < len({tuple(sorted(o.items())) for o in overrides}):
        return [], ""
    legend = ", ".join(k for k in rest if "." not in k)
    legend += "".join(f"; s: {k}" if k == "trainer.seed" else f"; d: {k}" for k in seeds)
    return names, legend.lstrip("; ")


def without_seed(short: str) -> str:
    """A short name less its seeds (`he_normal` for `he_normal s0`): its setting's."""
    return " ".join(p for p in short.split(" ") if not (p[:1] in "sd" and p[1:].lstrip("-").isdigit()))


def wall(summary: dict) -> str:
    """A run's wall time; a stacked run's: its share of its stack's (the stack's own is said once)."""
    batch, own = summary.get("batch"), summary.get("wall_time_s")
    if batch and batch.get("members"):
        return seconds(batch["wall_time_s"] / batch["members"])
    return "-" if own is None else seconds(own)


def seconds(t: float) -> str:
    return f"{t:.1f}" if t >= 1 else f"{t:.2f}"
