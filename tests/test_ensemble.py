"""`nnlab ensemble PATH`: the averaged prediction of a sweep's runs against its members."""

from __future__ import annotations

import json

import pytest

from conftest import TINY, events, nnlab, summary


def test_an_ensemble_of_seeds_is_no_worse_than_its_mean_member(tmp_path):
    sweep = tmp_path / "sweep"
    out = nnlab(
        "train",
        "-m",
        "trainer.seed=0,1,2",
        *TINY,
        "trainer.epochs=3",
        "model.hidden=[8]",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = nnlab("ensemble", str(sweep), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ensemble (mean of probabilities)" in res.stdout and "members: mean ± std" in res.stdout
    result = json.loads((sweep / "ensemble.json").read_text())
    assert len(result["members"]) == 3 and result["test_examples"] == 80
    assert result["ensemble"]["loss"] <= result["members_loss_mean"] + 1e-6  # Jensen: averaging probabilities
    assert result["ensemble"]["acc"] >= result["members_acc_mean"] - 0.02
    assert result["members_acc_std"] > 0  # the seeds give different members
    first_dir = next(sweep.glob("*trainer.seed=0"))
    first = next(m for m in result["members"] if m["run"] == str(first_dir))
    own = summary(first_dir)["metrics"]  # the first run's own test set: the same numbers
    assert first["acc"] == pytest.approx(own["acc/test"]) and first["loss"] == pytest.approx(own["loss/test"], rel=1e-4)
    assert {"ensemble/acc", "ensemble/loss", "members/acc_mean", "members/acc_std"} <= set(
        events(sweep / "ensemble").Tags()["scalars"]
    )
    assert f"every member scored on the test set of {result['test_set_of']}" in res.stdout  # said, not implied


def test_an_ensemble_says_which_members_are_far_behind(tmp_path):
    sweep = tmp_path / "sweep"
    out = nnlab(
        "train", "-m", "init=zeros,he_normal", *TINY, "trainer.epochs=3", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = nnlab("ensemble", str(sweep), cwd=tmp_path)
    assert res.returncode == 0 and "weak members" in res.stdout and "init=zeros" in res.stdout.split("weak members")[1]


def test_an_ensemble_needs_two_runs(tmp_path):
    res = nnlab("ensemble", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 2 and "at least 2 runs" in res.stderr
