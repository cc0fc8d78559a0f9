"""report.py as units: the columns by task, the order, the names of runs (the CLI: test_sweeps.py)."""

from __future__ import annotations

import json
from pathlib import Path

from nnlab import report


def _run(root: Path, name: str, overrides: list[str], metrics: dict, status: str = "ok") -> None:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "summary.json").write_text(json.dumps({"status": status, "metrics": metrics}))


def test_runs_are_named_by_what_differs_and_sorted_best_first(tmp_path):
    _run(tmp_path, "a", ["activation=relu", "trainer.epochs=5"], {"acc/val": 0.8, "loss/val": 0.4})
    _run(tmp_path, "b", ["activation=tanh", "trainer.epochs=5"], {"acc/val": 0.9, "loss/val": 0.3})
    _run(tmp_path, "c", ["activation=sigmoid", "trainer.epochs=5"], {"acc/val": float("nan")}, status="diverged")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    runs = report.collect(tmp_path)
    assert sorted(r.name for r in runs) == ["activation=relu", "activation=sigmoid", "activation=tanh"]
    ordered = [r.name for r in report.sort_runs(runs, "acc/val")]
    assert ordered == ["activation=tanh", "activation=relu", "activation=sigmoid"]  # no value: last
    assert [r.name for r in report.sort_runs(runs, "loss/val")][:2] == ["activation=tanh", "activation=relu"]


def test_columns_follow_the_task():
    assert report.columns("classification")[:3] == ("acc/train", "acc/val", "acc/test")
    regression = report.columns("regression")
    assert regression[:3] == ("r2/train", "r2/val", "r2/test") and "mse/test" in regression and "acc/val" not in regression


def test_runs_that_differ_only_in_their_seed_are_one_setting_with_a_band_and_a_verdict(tmp_path):
    import csv

    for act, accs in (("relu", [0.95, 0.96, 0.97, 0.96]), ("zeros", [0.50, 0.51, 0.49, 0.50]), ("tanh", [0.90, 0.99, 0.93, 0.97])):
        for seed, acc in enumerate(accs):
            _run(tmp_path, f"{act}{seed}", [f"init={act}", f"trainer.seed={seed}"], {"acc/val": acc, "acc/test": acc, "loss/val": 1 - acc})
    sets = report.settings(report.collect(tmp_path), "acc/val")
    assert [(s.name, len(s.runs), s.verdict) for s in sets] == [
        ("init=relu", 4, "best"), ("init=tanh", 4, "not distinguishable with 4 seeds"), ("init=zeros", 4, "worse")]
    assert sets[0].bands["acc/val"].mean == 0.96 and sets[0].bands["acc/val"].n == 4
    paths = report.write_files(report.rows(report.collect(tmp_path)), report.collect(tmp_path), tmp_path, "acc/val")
    rows = list(csv.DictReader(open(paths["settings_csv"])))
    assert [r["setting"] for r in rows] == ["init=relu", "init=tanh", "init=zeros"] and rows[2]["verdict"] == "worse"
    assert float(rows[0]["acc/val ci95 low"]) < 0.96 < float(rows[0]["acc/val ci95 high"])
    assert "## Settings across seeds" in (tmp_path / "report.md").read_text()
