"""report.py as units: the columns by task, the order, the names of runs (the CLI: test_sweeps.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnlab.commands import report


def _run(root: Path, name: str, overrides: list[str], metrics: dict, status: str = "ok", alarms=(), **more) -> None:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "summary.json").write_text(
        json.dumps({"status": status, "metrics": metrics, "alarms": [{"name": a} for a in alarms], **more})
    )


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
    assert (
        regression[:3] == ("r2/train", "r2/val", "r2/test") and "mse/test" in regression and "acc/val" not in regression
    )


def test_runs_that_differ_only_in_their_seed_are_one_setting_with_a_band_and_a_verdict(tmp_path):
    import csv

    for act, accs in (
        ("relu", [0.95, 0.96, 0.97, 0.96]),
        ("zeros", [0.50, 0.51, 0.49, 0.50]),
        ("tanh", [0.90, 0.99, 0.93, 0.97]),
    ):
        for seed, acc in enumerate(accs):
            _run(
                tmp_path,
                f"{act}{seed}",
                [f"init={act}", f"trainer.seed={seed}"],
                {"acc/val": acc, "acc/test": acc, "loss/val": 1 - acc},
            )
    sets = report.settings(report.collect(tmp_path), "acc/val")
    assert [(s.name, len(s.runs), s.verdict) for s in sets] == [
        ("init=relu", 4, "best"),
        ("init=tanh", 4, "not distinguishable with 4 seeds"),
        ("init=zeros", 4, "worse"),
    ]
    assert sets[0].bands["acc/val"].mean == 0.96 and sets[0].bands["acc/val"].n == 4
    paths = report.write_files(report.rows(report.collect(tmp_path)), report.collect(tmp_path), tmp_path, "acc/val")
    rows = list(csv.DictReader(open(paths["settings_csv"])))
    assert [r["setting"] for r in rows] == ["init=relu", "init=tanh", "init=zeros"] and rows[2]["verdict"] == "worse"
    assert float(rows[0]["acc/val ci95 low"]) < 0.96 < float(rows[0]["acc/val ci95 high"])
    assert "## Settings across seeds" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_tables_never_cut_a_number_at_any_width(tmp_path, width):
    """Every value shown whole; a column that does not fit is left out and named; runs named by what differs."""
    from conftest import nnlab

    accs = {
        "he_normal": [0.9512, 0.9633, 0.9701],
        "zeros": [0.5012, 0.4977, 0.5033],
        "normal_small": [0.9111, 0.9822, 0.9305],
    }
    for init, values in accs.items():
        for seed, acc in enumerate(values):
            _run(
                tmp_path,
                f"{init}{seed}",
                [f"init={init}", f"trainer.seed={seed}", "optimizer=sgd"],
                {"acc/train": acc, "acc/val": acc, "acc/test": acc - 0.0101, "loss/val": 1.2345 - acc},
                alarms=["flat_loss"],
                batch={"stack": "1/1", "members": 9, "wall_time_s": 18.0},
            )
    out = nnlab("report", str(tmp_path), cwd=tmp_path, env={"COLUMNS": str(width)})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(len(line) <= width for line in lines if not line.startswith("written:")), out.stdout
    assert out.stdout.index("3 settings, best first by acc/val") < out.stdout.index(
        "9 runs under"
    )  # a seed sweep: settings first
    for init, values in accs.items():
        for seed, acc in enumerate(values):
            assert f"{init} s{seed}" in out.stdout and f"{acc:.4f}" in out.stdout  # the sort key's column stays
    assert "named by what differs: init; s: trainer.seed" in out.stdout
    assert [line.split()[1:3] for line in lines if line.startswith("│ ") and "±" in line] == [
        ["he_normal", "│"],
        ["normal_small", "│"],
        ["zeros", "│"],
    ] or width < 80
    shown_or_said = ("acc/test", "loss/val", "acc/train", "best epoch", "wall (s)", "alarms", "verdict")
    said = (
        " ".join(out.stdout[out.stdout.find("left out at") : out.stdout.find("written:")].split())
        if "left out" in out.stdout
        else ""
    )
    for header in shown_or_said:
        assert any(header in line for line in lines if line.startswith("┃")) or header in said, (header, out.stdout)
    if width >= 120:
        assert "left out" not in out.stdout and " 2.0 " in out.stdout  # wall: each run's share of the stack's 18 s
        assert "tied" in out.stdout and "worse" in out.stdout


def test_runs_without_a_validation_split_sort_by_the_training_score(tmp_path):
    _run(tmp_path, "a", ["trainer.seed=0"], {"acc/train": 0.9, "acc/test": 0.8})
    _run(tmp_path, "b", ["trainer.seed=1"], {"acc/train": 0.95, "acc/test": 0.85})
    runs = report.collect(tmp_path)
    assert report.default_sort(runs) == "acc/train"
    _run(tmp_path, "c", ["trainer.seed=2"], {"acc/train": 0.5, "acc/val": 0.5})
    assert report.default_sort(report.collect(tmp_path)) == "acc/val"


def test_time_to_a_threshold_is_a_column_with_its_band(tmp_path, capsys):
    """`--to acc/val=0.9` (note 001: ReLU reaches a given accuracy in fewer epochs than tanh): each run's first
    epoch at or above it and the training seconds until then, banded per setting; never reached: none."""
    curves = {"relu": [0.6, 0.92, 0.95], "tanh": [0.5, 0.7, 0.91], "sigmoid": [0.5, 0.5, 0.5]}
    for act, accs in curves.items():
        for seed in (0, 1):
            _run(tmp_path, f"{act}{seed}", [f"activation={act}", f"trainer.seed={seed}"], {"acc/val": accs[-1]})
            rows = [
                {"step": e, "epoch": e, "loss/train": 1.0, "acc/val": a, "time/epoch_s": 0.5}
                for e, a in enumerate(accs, 1)
            ]
            (tmp_path / f"{act}{seed}" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = report.collect(tmp_path)
    keys = report.reach(runs, "acc/val=0.9")
    assert keys == ["epochs to acc/val>=0.9", "seconds to acc/val>=0.9"]
    by = {r.name: (r.metric(keys[0]), r.metric(keys[1])) for r in runs}
    assert by["activation=relu,trainer.seed=0"] == (2, 1.0) and by["activation=tanh,trainer.seed=1"] == (3, 1.5)
    assert by["activation=sigmoid,trainer.seed=0"] == (None, None)
    sets = {st.name: st for st in report.settings(runs, "acc/val")}
    assert sets["activation=relu"].bands[keys[0]].mean == 2 and sets["activation=sigmoid"].bands[keys[0]] is None
    assert report.reach(report.collect(tmp_path), "loss/val=0.3")[0] == "epochs to loss/val<=0.3"  # lower is better
    assert report.main([str(tmp_path), "--to", "acc/val=0.9"]) == 0
    out = capsys.readouterr().out
    assert "epochs to acc/val>=0.9" in out and "epochs to acc/val>=0.9" in (tmp_path / "report.csv").read_text()
    # and in TensorBoard: each run's scalars (one .reach file, replaced by the next report), HPARAMS' columns
    assert report.main([str(tmp_path), "--to", "acc/val=0.9"]) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    relu = tmp_path / "relu0"
    assert len(list(relu.glob("events.out.tfevents.*.reach"))) == 1
    ea = EventAccumulator(str(relu))
    ea.Reload()
    assert ea.Scalars("reach/epochs to acc/val>=0.9")[0].value == 2
    ea = EventAccumulator(str(tmp_path / "overview"))
    ea.Reload()
    content = ea.PluginTagToContent("hparams")["_hparams_/experiment"]
    tags = [m.name.tag for m in plugin_data_pb2.HParamsPluginData.FromString(content).experiment.metric_infos]
    assert "reach/epochs to acc/val>=0.9" in tags and "reach/seconds to acc/val>=0.9" in tags
    for bad in ("acc/test=0.9", "acc/val", "acc/val=high"):
        assert report.main([str(tmp_path), "--to", bad]) == 2
