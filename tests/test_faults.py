"""Faults outside the config: an output folder that cannot be written, a disk that fills up while a
checkpoint is saved, a data root that cannot take a download, a folder in use by another run, a refused
resume, damaged run files, a sweep told to stop at its first failure; numbered checkpoints pruned."""

from __future__ import annotations

import hashlib
import json
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY, nnlab, summary, train


def test_an_output_folder_that_cannot_be_created_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for args in ([f"hydra.run.dir={blocker}/run"], ["-m", f"hydra.sweep.dir={blocker}/sweep", "activation=relu,tanh"]):
        out = nnlab("train", *TINY, *args, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert f"{blocker} is a file, not a folder" in out.stderr and "hydra." in out.stderr
        assert "Traceback" not in out.stderr
    assert blocker.read_text() == "not a folder"


@pytest.mark.slow
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path):
    """A file-size limit below the checkpoint's size makes the write fail part-way, as a full disk does."""
    wide = [*TINY, "model.hidden=[256,256]"]  # about 0.8 MB of weights and Adam state
    run, _ = train(tmp_path, *wide)
    last = run / "checkpoints" / "last.pt"
    before = hashlib.sha256(last.read_bytes()).hexdigest()

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))  # python ignores SIGXFSZ: writes fail

    out = subprocess.run(
        [sys.executable, "-m", "nnlab", "train", *wide, "trainer.epochs=3", f"hydra.run.dir={run}", "resume=auto"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "could not write the checkpoint" in out.stderr and "intact" in out.stderr and f"resume={run}" in out.stderr
    assert "Traceback" not in out.stderr
    assert hashlib.sha256(last.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.pt", "last.pt"]  # no temporary file left
    assert summary(run)["status"] == "failed"
    resumed = nnlab("train", *wide, "trainer.epochs=3", f"hydra.run.dir={run}", "resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0 and summary(run)["status"] == "ok" and summary(run)["epochs_run"] == 3


def test_a_data_root_that_cannot_take_a_download_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for data, name in (("mnist", "MNIST"), ("cifar10", "CIFAR-10")):
        out = nnlab("train", f"data={data}", f"data.source.root={blocker}/data", "trainer.progress=false", cwd=tmp_path)
        assert out.returncode == 2 and f"{name} is not in {blocker}/data" in out.stderr
        assert f"{blocker} is a file, not a folder" in out.stderr and "NNLAB_DATA_DIR" in out.stderr
        assert "Traceback" not in out.stderr


def test_keep_checkpoints_keeps_the_newest_numbered_ones(tmp_path):
    run, _ = train(tmp_path, *TINY, "trainer.epochs=4", "trainer.keep_checkpoints=2")
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "epoch_0003.pt", "epoch_0004.pt", "last.pt"]
    load = lambda name: torch.load(folder / name, weights_only=True)  # noqa: E731
    assert load("epoch_0004.pt")["epoch"] == 4 and load("epoch_0003.pt")["epoch"] == 3
    assert all(
        torch.equal(a, b) for a, b in zip(load("epoch_0004.pt")["model"].values(), load("last.pt")["model"].values())
    )
    assert not all(
        torch.equal(a, b) for a, b in zip(load("epoch_0003.pt")["model"].values(), load("last.pt")["model"].values())
    )
    default, _ = train(tmp_path, *TINY, run_dir="default")
    assert sorted(p.name for p in (default / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def _snapshot(folder):
    """Every file's hash, but the lock's (a command that takes the folder to look writes its pid there)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "nnlab", "train", *TINY, "trainer.epochs=100000", f"hydra.run.dir={run}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").exists():
            assert time.time() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.05)
        hydra_files = _snapshot(run / ".hydra")
        for args in ([f"hydra.run.dir={run}"], [f"hydra.run.dir={run}", "resume=auto"]):
            second = nnlab("train", *TINY, *args, cwd=tmp_path)
            assert (
                second.returncode == 2
                and f"{run} is in use by another nnlab process (pid {first.pid})" in second.stderr
            )
            assert "Traceback" not in second.stderr
        assert _snapshot(run / ".hydra") == hydra_files  # nothing of the first run's was touched
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
def test_a_refused_or_impossible_resume_changes_nothing(tmp_path):
    run, _ = train(tmp_path, *TINY)
    before = _snapshot(run)
    for args, message in (
        (
            ["resume=auto", f"hydra.run.dir={run}"],
            "has finished (status ok, 2 epochs): nothing to resume, nothing changed",
        ),
        ([f"resume={run}"], "has finished"),
        ([f"resume={run}/checkpoints/last.pt"], "has finished"),
        (
            [f"resume={run}", "optimizer.lr=0.5"],
            "was made with a different config (optimizer.lr=0.001 there vs 0.5 here)",
        ),
        ([f"resume={run}/config.yaml"], "not a run folder"),
        ([f"resume={tmp_path}"], "is not an nnlab run folder"),
        ([f"resume={tmp_path}/nowhere/last.pt"], "no such file or folder"),
    ):
        out = nnlab("train", *TINY, *args, cwd=tmp_path)
        assert out.returncode == (0 if "finished" in message else 2), out.stderr
        assert message in out.stdout + out.stderr and "Traceback" not in out.stderr
        assert _snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no folder made for a bad resume
    longer = nnlab("train", f"resume={run}", "trainer.epochs=3", cwd=tmp_path)  # its own overrides, not retyped
    assert longer.returncode == 0, longer.stderr
    assert summary(run)["epochs_run"] == 3 and summary(run)["status"] == "ok"


def test_a_checkpoint_without_its_config_is_refused_and_the_run_stays_ok(tmp_path):
    run, _ = train(tmp_path, *TINY)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    del state["config"]
    torch.save(state, run / "checkpoints" / "last.pt")
    out = nnlab("train", *TINY, "trainer.epochs=3", f"resume={run}", cwd=tmp_path)
    assert out.returncode == 2 and "cannot be resumed: it does not record the config" in out.stderr
    assert summary(run)["status"] == "ok"


def test_an_error_before_training_leaves_no_folder_behind(tmp_path, mnist_root):
    truncated = tmp_path / "data" / "MNIST" / "raw"
    truncated.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (truncated / name).write_bytes((mnist_root / "MNIST" / "raw" / name).read_bytes()[:1000])
    for args in (
        ["data=mnist", f"data.source.root={tmp_path}/data"],  # truncated files
        ["data=mnist", f"data.source.root={tmp_path}/empty", "data.source.download=false"],  # missing
        ["data=mnist", f"data.source.root={tmp_path}/offline"],
    ):
        # a download that cannot happen here
        out = nnlab("train", *args, "trainer.progress=false", cwd=tmp_path)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data"], out.stderr  # no outputs/, no empty data roots


def test_sweep_on_failure_stop_ends_the_sweep_at_the_first_failure(tmp_path):
    common = ["-m", *TINY, "optimizer=sgd", "alarms.divergence_factor=1.5"]
    out = nnlab("train", *common, "optimizer.lr=50,0.1", f"hydra.sweep.dir={tmp_path / 'goes_on'}", cwd=tmp_path)
    assert out.returncode == 0 and len(list((tmp_path / "goes_on").glob("*/summary.json"))) == 2
    out = nnlab(
        "train",
        *common,
        "optimizer.lr=50,0.1",
        "sweep.on_failure=stop",
        f"hydra.sweep.dir={tmp_path / 'stops'}",
        cwd=tmp_path,
    )
    assert out.returncode == 1 and "the sweep stops here (sweep.on_failure=stop)" in out.stderr
    assert [json.loads(p.read_text())["status"] for p in (tmp_path / "stops").glob("*/summary.json")] == ["diverged"]


def test_report_on_damaged_runs_and_an_unwritable_out_is_one_paragraph(tmp_path):
    run, _ = train(tmp_path, *TINY, run_dir="runs/a")
    train(tmp_path, *TINY, "trainer.seed=1", run_dir="runs/b")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "loss/tr')  # torn by a full disk
    (run / ".hydra" / "overrides.yaml").write_text("[unclosed")
    bad = tmp_path / "runs" / "c"
    bad.mkdir()
    (bad / "summary.json").write_text("[1, 2]")
    out = nnlab("report", str(tmp_path / "runs"), cwd=tmp_path)
    assert out.returncode == 0 and "2 runs under" in out.stdout, out.stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = nnlab("report", str(tmp_path / "runs"), "--out", f"{blocker}/report", cwd=tmp_path)
    assert out.returncode == 2 and "--out" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_ctrl_c_at_any_moment_of_start_up_is_one_line_and_exit_130(tmp_path, delay):
    """Ctrl-C while Hydra, torch and the data start up (or, later, while training: the loop saves and
    stops): exit 130 and no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", "train", *TINY, "trainer.epochs=100000", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # (a test worker may ignore SIGINT, and a child inherits that; a terminal's user has it on)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGINT), out[-1000:] + err[-2000:]  # a shell shows both as 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_a_resume_that_stops_before_training_leaves_the_run_as_it_was(tmp_path):
    """The data went missing since: the resume stops in setup, after Hydra rewrote .hydra/; it is put back."""
    import shutil

    from conftest import write_tiny_cifar10

    root = write_tiny_cifar10(tmp_path / "data")
    cifar = [
        "data=cifar10",
        f"data.source.root={root}",
        "data.source.download=false",
        "trainer.epochs=1",
        "trainer.progress=false",
        "trainer.batch_size=16",
    ]
    run, _ = train(tmp_path, *cifar)
    before = _snapshot(run)
    shutil.rmtree(root)
    out = nnlab("train", f"resume={run}", "trainer.epochs=2", cwd=tmp_path)
    assert out.returncode == 2 and "CIFAR-10 is not in" in out.stderr, out.stderr[-2000:]
    after = _snapshot(run)
    kept = lambda files: {k: v for k, v in files.items() if k not in ("train.log", ".lock")}  # noqa: E731  (Hydra's log, the lock's pid)
    assert kept(after) == kept(before)
