"""hydra.launcher.executor: each group of a batched sweep as ONE task of submitit (Ray where installed),
trained on the worker; a member equals its run alone; a killed task loses only its stack, and the same
command with resume=auto trains exactly what is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY, nnlab, summary, train


def summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


@pytest.mark.slow
def test_submitit_local_sends_each_stack_as_one_task_and_members_equal_their_runs_alone(tmp_path):
    sweep = tmp_path / "sweep"
    out = nnlab(
        "train",
        "-m",
        "activation=relu,tanh,elu",
        "trainer.seed=range(4)",
        *TINY,
        "hydra.launcher.executor=submitit_local",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sending 3 tasks to submitit (local" in out.stdout and "12 runs, 4 per task" in out.stdout
    runs = summaries(sweep)
    assert len(runs) == 12 and all(s["status"] == "ok" for s in runs.values())
    assert all(s["batch"]["members"] == 4 for s in runs.values())  # each trained in a stack of 4, on its worker
    assert len(list((sweep / ".submitit").glob("*_result.pkl"))) == 3  # three tasks, one result each
    for activation, seed in (("relu", 0), ("tanh", 2), ("elu", 3)):
        alone, _ = train(
            tmp_path, *TINY, f"activation={activation}", f"trainer.seed={seed}", run_dir=f"alone_{activation}"
        )
        member = runs[f"activation={activation},trainer.seed={seed}"]
        for key, value in summary(alone)["metrics"].items():
            assert member["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.slow
def test_a_killed_task_loses_only_its_stack_and_resume_auto_trains_what_is_missing(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "train",
        "-m",
        "trainer.epochs=2,600",
        "trainer.seed=0,1",
        "data.source.n_train=64",
        "data.source.n_test=40",
        "trainer.progress=false",
        "hydra.launcher.executor=submitit_local",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    short = [sweep / f"trainer.epochs=2,trainer.seed={s}" for s in (0, 1)]
    long = [sweep / f"trainer.epochs=600,trainer.seed={s}" for s in (0, 1)]
    deadline = time.time() + 240
    while time.time() < deadline and not (
        all((r / "summary.json").exists() for r in short)
        and all((r / "metrics.jsonl").exists() and (r / "checkpoints" / "last.pt").exists() for r in long)
    ):
        time.sleep(0.5)
    assert all((r / "summary.json").exists() for r in short), "the short stack did not finish"
    workers = subprocess.run(
        ["pgrep", "-f", f"submitit.core._submit {sweep / '.submitit'}"], capture_output=True, text=True
    ).stdout.split()
    assert workers, "no worker process found"
    for pid in workers:
        os.kill(int(pid), signal.SIGKILL)  # the long stack's task dies mid-training (a preempted node, an OOM kill)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err[-600:]
    assert "the task died" in out and "resume=auto" in err
    assert not any((r / "summary.json").exists() for r in long)
    kept = {r: (r / "summary.json").stat().st_mtime_ns for r in short}
    again = nnlab(*args, "resume=auto", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-600:]
    assert all((r / "summary.json").stat().st_mtime_ns == t for r, t in kept.items())  # finished ones not trained again
    for r in long:
        s = summary(r)
        epochs = [
            json.loads(line)["epoch"] for line in (r / "metrics.jsonl").read_text().splitlines() if "loss/train" in line
        ]
        assert (
            s["status"] == "ok" and s["epochs_run"] == 600 and epochs == list(range(1, 601))
        )  # continued, each epoch once


@pytest.mark.slow
def test_a_preempted_task_requeues_itself_and_its_stack_continues_from_its_checkpoints(tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "train",
        "-m",
        "trainer.seed=0,1",
        "trainer.epochs=500",
        "data.source.n_train=64",
        "data.source.n_test=40",
        "trainer.progress=false",
        "hydra.launcher.executor=submitit_local",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    runs = [sweep / f"trainer.seed={s}" for s in (0, 1)]
    deadline = time.time() + 240
    while time.time() < deadline and not all((r / "checkpoints" / "last.pt").exists() for r in runs):
        time.sleep(0.5)
    time.sleep(1.0)
    task = subprocess.run(
        ["pgrep", "-f", f"submitit.core._submit {sweep / '.submitit'}"], capture_output=True, text=True
    ).stdout.split()
    assert len(task) == 1, task
    os.kill(int(task[0]), signal.SIGUSR2)  # what SLURM sends before preempting a job, or at its time limit
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*_log.err"))
    assert "this job is preempted" in logs
    for r in runs:
        assert "run continues" in (r / "train.log").read_text()  # the requeued task went on from the checkpoint
        s = summary(r)
        epochs = [
            json.loads(line)["epoch"] for line in (r / "metrics.jsonl").read_text().splitlines() if "loss/train" in line
        ]
        assert (
            s["status"] == "ok" and s["epochs_run"] == 500 and epochs == list(range(1, 501))
        )  # continued, each epoch once


def test_an_unknown_executor_or_a_missing_package_is_one_paragraph(tmp_path):
    out = nnlab(
        "train",
        "-m",
        "trainer.seed=0,1",
        *TINY,
        "hydra.launcher.executor=slurm",
        f"hydra.sweep.dir={tmp_path / 's'}",
        cwd=tmp_path,
    )
    assert (
        out.returncode == 2
        and "not one of local, submitit_local, submitit_slurm, ray" in out.stderr
        and "Traceback" not in out.stderr
    )
    assert not (tmp_path / "s").exists()
    if importlib.util.find_spec("ray") is None:
        out = nnlab(
            "train",
            "-m",
            "trainer.seed=0,1",
            *TINY,
            "hydra.launcher.executor=ray",
            f"hydra.sweep.dir={tmp_path / 'r'}",
            cwd=tmp_path,
        )
        assert out.returncode == 2 and "pip install 'nnlab[ray]'" in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None and not os.environ.get("CI"), reason="the ray extra is not installed"
)
def test_ray_executor_on_a_local_ray_instance(tmp_path):  # CI installs the extra (.ci/run): there it runs, never skips
    sweep = tmp_path / "sweep"
    out = nnlab(
        "train",
        "-m",
        "activation=relu,tanh",
        "trainer.seed=0,1",
        *TINY,
        "hydra.launcher.executor=ray",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={"HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "sending 2 tasks to Ray" in out.stdout and len(summaries(sweep)) == 4
    assert not (tmp_path / "home" / "ray").exists()  # Ray's session files in a temporary folder, not ~
