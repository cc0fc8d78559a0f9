"""Sweeps through Hydra's own machinery: optuna random search, the joblib and submitit launchers, a
sweep where one job diverges and one fails while the rest finish, and `nnlab report` on a sweep."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from conftest import TINY, nnlab, summary


def summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


def test_optuna_random_search_in_log_space(tmp_path):
    out = nnlab(
        "train",
        "-m",
        "hparams_search=coarse",
        "hydra.sweeper.n_trials=3",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    runs = summaries(tmp_path)
    assert len(runs) == 3 and all(r["status"] == "ok" for r in runs.values())
    lrs = [yaml.safe_load((tmp_path / name / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"] for name in runs]
    assert len(set(lrs)) == 3 and all(1e-5 <= lr <= 1.0 for lr in lrs)
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["best_value"] == max(r["metrics"]["acc/val"] for r in runs.values())  # the objective is acc/val


def test_fine_stage_uses_tpe(tmp_path):
    out = nnlab(
        "train",
        "-m",
        "hparams_search=fine",
        "hydra.sweeper.n_trials=2",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TPESampler" in out.stdout + out.stderr and len(summaries(tmp_path)) == 2


@pytest.mark.slow
def test_a_sweep_over_a_list_of_settings_runs_each_with_every_seed(tmp_path):
    settings = "hydra.sweeper.settings=[['init=zeros','optimizer.lr=0.001'],['init=he_normal','optimizer.lr=0.01']]"
    out = nnlab(
        "train",
        "-m",
        settings,
        "trainer.seed=0,1",
        "init=xavier_normal",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(summaries(tmp_path)) == [
        f"init={i},optimizer.lr={lr},trainer.seed={s}"  # a setting's value replaces the line's
        for i, lr in (("he_normal", "0.01"), ("zeros", "0.001"))
        for s in (0, 1)
    ]
    config = yaml.safe_load(
        (tmp_path / "init=he_normal,optimizer.lr=0.01,trainer.seed=1" / ".hydra" / "config.yaml").read_text()
    )
    assert (
        config["optimizer"]["lr"] == 0.01
        and config["init"]["_target_"].endswith("he_normal")
        and config["trainer"]["seed"] == 1
    )
    assert "4 runs as one stack" in out.stdout
    bad = nnlab(
        "train",
        "-m",
        "hydra.sweeper.settings=[['init=zeros'],['optimizer.lr=-1']]",
        *TINY,
        f"hydra.sweep.dir={tmp_path / 'bad'}",
        cwd=tmp_path,
    )
    assert (
        bad.returncode == 2 and "optimizer.lr" in bad.stderr and not (tmp_path / "bad").exists()
    )  # checked before any run


def test_joblib_launcher_runs_two_jobs_in_parallel(tmp_path):
    out = nnlab(
        "train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "activation=relu,tanh",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr
    runs = summaries(tmp_path)
    assert [n.split(",")[0] for n in sorted(runs)] == ["activation=relu", "activation=tanh"]
    assert all(r["status"] == "ok" for r in runs.values())
    cores = os.cpu_count()
    assert all(r["torch_threads"] == max(1, cores // 2) for r in runs.values())  # the jobs share the cores


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path):
    out = nnlab(
        "train",
        "-m",
        "hydra/launcher=submitit_local",
        "activation=relu,tanh",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    runs = summaries(tmp_path)
    assert [n.split(",")[0] for n in sorted(runs)] == ["activation=relu", "activation=tanh"]
    assert all(r["status"] == "ok" for r in runs.values())


def test_ray_launcher_on_a_local_ray_instance(tmp_path):
    pytest.importorskip(
        "hydra_plugins.hydra_ray_launcher", reason="the ray extra is not installed (pip install -e '.[ray]')"
    )
    out = nnlab(
        "train",
        "-m",
        "hydra/launcher=ray",
        "activation=relu,tanh",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path.parent,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    runs = summaries(tmp_path)
    assert [n.split(",")[0] for n in sorted(runs)] == ["activation=relu", "activation=tanh"]
    assert all(r["status"] == "ok" for r in runs.values())


def test_a_diverged_and_a_failed_job_do_not_stop_the_sweep(tmp_path, cifar_root):
    # lr=1000 diverges; the `broken` data root holds a corrupt batch file, so its jobs fail; the rest finish
    broken = tmp_path / "broken"
    (broken / "cifar-10-batches-py").mkdir(parents=True)
    for f in (cifar_root / "cifar-10-batches-py").iterdir():
        (broken / "cifar-10-batches-py" / f.name).write_bytes(
            b"not a pickle" if f.name == "data_batch_1" else f.read_bytes()
        )
    sweep = tmp_path / "sweep"
    out = nnlab(
        "train",
        "-m",
        "data=cifar10",
        f"data.source.root={cifar_root},{broken}",
        "optimizer=sgd",
        "optimizer.lr=0.01,1000",
        "trainer.epochs=2",
        "trainer.progress=false",
        "data.source.download=false",
        "trainer.batch_size=16",
        "early_stopping.metric=acc/val",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 1, out.stderr[-3000:]  # the others finished; a script still learns of the failures
    assert "2 jobs of the sweep failed or were refused" in out.stderr and "resume=auto" in out.stderr
    runs = {}
    for path in sweep.rglob("summary.json"):  # a path in the overrides nests the run folders
        cfg = yaml.safe_load((path.parent / ".hydra" / "config.yaml").read_text())
        root = "broken" if cfg["data"]["source"]["root"] == str(broken) else "good"
        runs[(root, cfg["optimizer"]["lr"] == 1000)] = json.loads(path.read_text())
    assert len(runs) == 4
    assert runs[("good", False)]["status"] == "ok" and runs[("good", True)]["status"] == "diverged"
    assert runs[("broken", False)]["status"] == "failed" and runs[("broken", True)]["status"] == "failed"
    assert "data_batch_1 is not a valid CIFAR-10 batch file" in runs[("broken", False)]["error"]

    report = nnlab("report", str(sweep), "--sort", "acc/val", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    lines = [line for line in report.stdout.splitlines() if "lr=" in line and line.startswith("│")]
    assert len(lines) == 4 and " ok " in lines[0]  # the finished run first
    assert sum(" diverged " in line for line in lines) == 1 and sum(" failed " in line for line in lines) == 2


def test_report_on_a_sweep_writes_csv_markdown_and_png(tmp_path):
    sweep = tmp_path / "sweep"
    out = nnlab(
        "train", "-m", "activation=relu,sigmoid", "optimizer=sgd", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = nnlab("report", str(sweep), "--sort", "loss/train", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "2 runs under" in report.stdout and "│ relu " in report.stdout and "│ sigmoid " in report.stdout
    assert "named by what differs: activation" in report.stdout
    rows = list(csv.DictReader(open(sweep / "report.csv")))
    assert [r["run"] for r in rows][0] == "activation=relu"  # sorted by training loss, lowest first
    for r in rows:
        s = summary(Path(r["path"]))
        assert float(r["acc/test"]) == s["metrics"]["acc/test"] and r["status"] == "ok"
    assert "| run | status |" in (sweep / "report.md").read_text()
    assert (sweep / "report.png").stat().st_size > 5000


def test_report_refuses_a_folder_without_runs(tmp_path):
    out = nnlab("report", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and "no runs under" in out.stderr
