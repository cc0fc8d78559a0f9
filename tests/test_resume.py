"""Never lose a run: continue from checkpoints exactly (SIGKILL mid-epoch, SIGTERM, more epochs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import nnlab, summary, train

RUN = [
    "data.source.n_train=1500",
    "trainer.epochs=4",
    "trainer.progress=false",
    "trainer.checkpoint_every=7",
    "trainer.log_every=5",
    "model.dropout=0.2",
    "regularization.input_noise=0.1",
]  # (dropout and noise: RNG in play)


def rows_without_timing(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in rows]


def weights(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def start(tmp_path, run, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "nnlab", "train", *RUN, *extra, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_step(run, step, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        path = run / "metrics.jsonl"
        if path.exists() and any(
            json.loads(line).get("step", 0) >= step for line in path.read_text().splitlines() if line
        ):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the run did not get there in time")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    ref, _ = train(tmp_path, *RUN, run_dir="ref")
    run = tmp_path / "killed"
    proc = start(tmp_path, run)
    wait_for_step(
        run, 10, proc
    )  # epoch 1 of 4 (38 steps an epoch); fast or loaded machines get further before the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists()
    killed_at = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"]
    per_epoch = summary(ref)["steps"] // 4  # 38: 1200 training points in batches of 32
    assert 0 < killed_at < 4 * per_epoch and (
        killed_at % 7 == 0 or killed_at % per_epoch == 0
    )  # a periodic or an epoch-end checkpoint
    out = nnlab("train", *RUN, "resume=auto", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert summary(run)["metrics"] == summary(ref)["metrics"]
    assert all(torch.equal(a, b) for a, b in zip(weights(run).values(), weights(ref).values()))
    assert rows_without_timing(run) == rows_without_timing(ref)  # no duplicated or missing points


def test_sigterm_saves_marks_interrupted_and_resumes(tmp_path):
    ref, _ = train(tmp_path, *RUN, run_dir="ref")
    run = tmp_path / "term"
    proc = start(tmp_path, run)
    wait_for_step(run, 40, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err
    s = summary(run)
    assert s["status"] == "interrupted" and s["signal"] == "SIGTERM"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == s["steps"] and state["step"] >= 40
    out = nnlab("train", *RUN, f"resume={run}", cwd=tmp_path)  # the run directory comes from the path
    assert out.returncode == 0, out.stderr[-2000:]
    assert summary(run)["status"] == "ok" and summary(run)["metrics"] == summary(ref)["metrics"]


def test_more_epochs_continue_the_same_run(tmp_path):
    ref, _ = train(tmp_path, *RUN, run_dir="ref")
    run, _ = train(tmp_path, *RUN[:1], "trainer.epochs=2", *RUN[2:], run_dir="short")
    out = nnlab("train", *RUN, f"resume={run / 'checkpoints' / 'last.pt'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert summary(run)["metrics"] == summary(ref)["metrics"] and summary(run)["epochs_run"] == 4


def test_early_stopping_counts_the_same_across_a_resume(tmp_path):
    """A checkpoint holds its monitor as of its epoch's end, an epoch that did not improve counted: resumed
    there, early stopping stops where the run straight through stops (patience 3; nothing improves on the
    first epoch by min_delta 10, so the run stops after epoch 4)."""
    stop = ["early_stopping.patience=3", "early_stopping.min_delta=10"]
    base = [r for r in RUN if not r.startswith(("trainer.epochs", "trainer.checkpoint_every"))]
    ref, _ = train(tmp_path, *base, *stop, "trainer.epochs=10", run_dir="ref")
    assert summary(ref)["epochs_run"] == 4 and summary(ref)["stopped_early"]
    run, _ = train(tmp_path, *base, *stop, "trainer.epochs=3", run_dir="short")
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["monitor"]["bad_epochs"] == 2
    out = nnlab("train", *base, *stop, "trainer.epochs=10", f"resume={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert summary(run)["epochs_run"] == 4 and summary(run)["metrics"] == summary(ref)["metrics"]


def test_resume_refuses_another_config_and_auto_starts_fresh(tmp_path):
    run, _ = train(tmp_path, *RUN[:1], "trainer.epochs=1", *RUN[2:], run_dir="a")
    out = nnlab("train", *RUN, "optimizer.lr=0.5", f"resume={run}", cwd=tmp_path)
    assert out.returncode == 2 and "different config" in out.stderr and "optimizer.lr" in out.stderr
    fresh, _ = train(tmp_path, *RUN[:1], "trainer.epochs=1", *RUN[2:], "resume=auto", run_dir="fresh")
    assert summary(fresh)["status"] == "ok" and summary(fresh)["epochs_run"] == 1


@pytest.mark.slow
def test_sigkill_a_pretrained_regression_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    """The regression sums (per target, kept mid-epoch) and the pretraining stages survive a kill."""
    reg = [
        "data=sine",
        "loss=huber",
        "data.source.n_train=1500",
        "trainer.epochs=4",
        "trainer.progress=false",
        "trainer.checkpoint_every=7",
        "pretrain.method=supervised",
        "pretrain.epochs=1",
        "model.dropout=0.2",
    ]
    ref, _ = train(tmp_path, *reg, run_dir="ref")
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", "train", *reg, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_step(run, 10, proc)  # 38 steps an epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists()
    out = nnlab("train", *reg, "resume=auto", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert summary(run)["metrics"] == summary(ref)["metrics"] and "r2/test" in summary(run)["metrics"]
    assert summary(run)["pretrain"] == summary(ref)["pretrain"]
    assert rows_without_timing(run) == rows_without_timing(ref)


@pytest.mark.slow
def test_kill_9_at_random_moments_including_saves_then_resume_is_exact(tmp_path):
    """Fault injection: a seeded sequence of SIGKILLs at random moments of one run (a checkpoint every
    step, so that many land inside a save), a torn last metrics line as a full disk leaves one, and a
    resume after each: the run ends with the uninterrupted run's weights and exactly its rows."""
    import random

    every_step = ["trainer.checkpoint_every=1"]
    ref, _ = train(tmp_path, *RUN, *every_step, run_dir="ref")
    run, rng, kills = tmp_path / "killed", random.Random(14), 0
    for attempt in range(4):
        proc = start(tmp_path, run, *every_step, *(["resume=auto"] if attempt else []))
        wait_for_step(run, 1, proc)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        with open(run / "metrics.jsonl", "a") as f:
            f.write('{"step": 1000000, "loss/train_st')  # a torn append
    out = nnlab("train", *RUN, *every_step, "resume=auto", f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert kills >= 2
    assert all(torch.equal(a, b) for a, b in zip(weights(run).values(), weights(ref).values()))
    assert rows_without_timing(run) == rows_without_timing(ref)  # no duplicated, missing or torn row
    assert summary(run)["metrics"] == summary(ref)["metrics"]
    assert not list(run.rglob("*.tmp*"))  # no temporary file of an interrupted save is left


def test_a_checkpoint_at_an_epochs_last_step_keeps_the_rows_before_it_only():
    """checkpoint_every can save at an epoch's last step before that epoch ends: its epoch-end row (same
    step, written after the save) must go on resume, or the resumed run writes it twice (a kill found it)."""
    from nnlab.training.member import _before

    mid = {"step": 50, "position": {"batch": 10}}  # saved at step 50, the epoch not ended yet
    end = {"step": 50, "position": {"batch": 0}}  # saved by the epoch's end, after its row
    step_row, epoch_row = {"step": 50, "step/loss": 0.3}, {"step": 50, "epoch": 5, "loss/train": 0.33}
    later, test = {"step": 51, "step/loss": 0.2}, {"step": 50, "acc/test": 0.9}
    assert _before(step_row, mid) and not _before(epoch_row, mid)
    assert _before(step_row, end) and _before(epoch_row, end)
    assert not _before(later, mid) and not _before(test, end)
