"""The landscape of a search over two numeric settings: its axes, its cells, the picture and its files,
and the edge advice with the next sweep's command line (commands/landscape.py, views/landscape.py)."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import pytest

from conftest import TINY, nnlab
from nnlab.commands import landscape, report
from nnlab.errors import ConfigError

LRS, DECAYS = ["0.001", "0.01", "0.1", "1.0"], ["1e-05", "0.0001", "0.001"]


def _run(root: Path, name: str, overrides: list[str], metrics: dict, status: str = "ok") -> None:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "summary.json").write_text(json.dumps({"status": status, "metrics": metrics, "alarms": []}))


def grid(root: Path, score, seeds=(0, 1, 2), extra=()) -> None:
    """A 4 x 3 grid of lr x weight decay over `seeds`, acc/val = score(lr, wd, seed) (None: diverged)."""
    for lr, wd, seed in itertools.product(LRS, DECAYS, seeds):
        value = score(float(lr), float(wd), seed)
        _run(
            root,
            f"lr={lr},wd={wd},s={seed}",
            [
                "optimizer=momentum",
                f"optimizer.lr={lr}",
                f"optimizer.weight_decay={wd}",
                f"trainer.seed={seed}",
                *extra,
            ],
            {"acc/val": value} if value is not None else {},
            "ok" if value is not None else "diverged",
        )


def peak(lr_best: float, wd_best: float):
    """A landscape with one peak (the rate and the decay at which acc/val is highest), a little seed noise;
    the largest rate diverges."""
    return lambda lr, wd, seed: (
        None
        if lr >= 1
        else 0.95 - 0.05 * abs(math.log10(lr / lr_best)) - 0.03 * abs(math.log10(wd / wd_best)) + 0.002 * seed
    )


def test_two_numeric_settings_make_a_map_and_anything_else_does_not(tmp_path):
    grid(tmp_path / "g", peak(0.1, 0.0001))
    runs = report.collect(tmp_path / "g")
    x, y = landscape.axes(runs)
    assert (x.key, y.key) == ("optimizer.lr", "optimizer.weight_decay") and x.log and y.log
    assert x.values == [0.001, 0.01, 0.1, 1.0] and len(y.values) == 3
    with pytest.raises(ConfigError, match="--map optimizer.lr,optimizer"):
        landscape.axes(runs, "optimizer.lr,optimizer")
    _run(tmp_path / "c", "a", ["activation=relu", "optimizer.lr=0.1"], {"acc/val": 0.9})
    _run(tmp_path / "c", "b", ["activation=tanh", "optimizer.lr=0.01"], {"acc/val": 0.8})
    assert landscape.axes(report.collect(tmp_path / "c")) is None  # one numeric, one a choice


def test_the_best_inside_asks_for_a_finer_sweep_around_it(tmp_path):
    grid(tmp_path, peak(0.01, 0.0001))
    runs = report.collect(tmp_path)
    sets = report.settings(runs, "acc/val")
    found = landscape.axes(runs)
    cells = landscape.cells(sets, *found, "acc/val")
    assert sum(c.verdict == "best" for c in cells) == 1
    failed = [c for c in cells if c.x == 1.0]
    assert all(c.mean is None and c.failed == "diverged 3/3" for c in failed)
    said = landscape.advice(cells, found, runs)
    assert "inside the ranges swept" in said[0] and said[-1].startswith("next: nnlab train -m ")
    words = said[-1].split()
    assert "optimizer=momentum" in words and "trainer.seed=0,1,2" in words
    assert "optimizer.lr=0.001,0.00316,0.01,0.0316,0.1" in words  # between the best's neighbours, in log steps


def test_the_best_at_an_edge_says_which_way_to_widen(tmp_path):
    grid(tmp_path, peak(0.1, 1e-6))  # the decay would be best below the range swept
    runs = report.collect(tmp_path)
    found = landscape.axes(runs)
    cells = landscape.cells(report.settings(runs, "acc/val"), *found, "acc/val")
    said = landscape.advice(cells, found, runs)
    assert any(s.startswith("optimizer.weight_decay: the best (1e-05) is at the bottom") for s in said), said
    assert "optimizer.weight_decay=1e-08,1e-07,1e-06,1e-05" in said[-1].split()


def test_a_grid_sweep_draws_its_landscape_with_its_files_and_tensorboard_picture(tmp_path):
    out = nnlab(
        "train",
        "-m",
        *TINY,
        "optimizer=momentum",
        "optimizer.lr=0.01,0.3",
        "optimizer.weight_decay=0.0001,0.01",
        "trainer.seed=0,1",
        f"hydra.sweep.dir={tmp_path / 's'}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    sweep = tmp_path / "s"
    assert "landscape of acc/val over optimizer.lr x optimizer.weight_decay" in out.stdout
    assert "next: nnlab train -m" in out.stdout
    assert (sweep / "report_map.png").stat().st_size > 10_000
    with open(sweep / "report_map.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["verdict"] for r in rows} >= {"best"}
    assert "## Landscape: acc/val over optimizer.lr and optimizer.weight_decay" in (sweep / "report.md").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(sweep / "overview"))
    ea.Reload()
    assert "sweep/report_map" in ea.Tags()["images"]
