"""Faults outside the config: an output folder that cannot be written, a disk that fills up while a
checkpoint is saved, a data root that cannot take a download; and numbered checkpoints pruned by a setting."""

from __future__ import annotations

import hashlib
import resource
import subprocess
import sys

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


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path):
    """A file-size limit below the checkpoint's size makes the write fail part-way, as a full disk does."""
    wide = [*TINY, "model.hidden=[256,256]"]  # about 0.8 MB of weights and Adam state
    run, _ = train(tmp_path, *wide)
    last = run / "checkpoints" / "last.pt"
    before = hashlib.sha256(last.read_bytes()).hexdigest()

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))  # python ignores SIGXFSZ: writes fail

    out = subprocess.run([sys.executable, "-m", "nnlab", "train", *wide, "trainer.epochs=3", f"hydra.run.dir={run}",
                          "resume=auto"], cwd=tmp_path, capture_output=True, text=True, preexec_fn=limit_file_size)  # fmt: skip
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
    assert all(torch.equal(a, b) for a, b in zip(load("epoch_0004.pt")["model"].values(), load("last.pt")["model"].values()))
    assert not all(torch.equal(a, b) for a, b in zip(load("epoch_0003.pt")["model"].values(), load("last.pt")["model"].values()))
    default, _ = train(tmp_path, *TINY, run_dir="default")
    assert sorted(p.name for p in (default / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
