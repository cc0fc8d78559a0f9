"""sweep.light: what the runs of a large stack write (checkpoints at most every few seconds, no histograms,
no per-run figures) and what they still compute: the same numbers and the same checkpoints as written in full."""

from __future__ import annotations

import json

import torch

from conftest import TINY, events, nnlab


def sweep(tmp_path, name, *args):
    out = nnlab(
        "train",
        "-m",
        *TINY,
        "trainer.epochs=6",
        "trainer.seed=0,1,2",
        *args,
        f"hydra.sweep.dir={tmp_path / name}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return tmp_path / name


def test_a_light_stack_computes_and_keeps_what_a_full_one_does(tmp_path):
    light, full = sweep(tmp_path, "light", "sweep.light=on"), sweep(tmp_path, "full", "sweep.light=off")
    for seed in range(3):
        a, b = light / f"trainer.seed={seed}", full / f"trainer.seed={seed}"
        sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
        assert sa["metrics"] == sb["metrics"] and sa["best_epoch"] == sb["best_epoch"]
        for which in ("best", "last"):
            ca, cb = (torch.load(r / "checkpoints" / f"{which}.pt", weights_only=True) for r in (a, b))
            assert ca["epoch"] == cb["epoch"] and all(torch.equal(ca["model"][k], cb["model"][k]) for k in cb["model"])
        assert "sweep.light: one of a stack of 3" in (a / "train.log").read_text()
        if seed > 0:  # figures on demand (the sweep's boundary grid draws the lowest seed's: trainer.seed=0)
            assert not list(a.glob("*.png")) and list(b.glob("decision_boundary.png"))
        assert not events(a).Tags()["histograms"] and events(b).Tags()["histograms"]


def test_a_stack_of_more_than_eight_is_light_by_itself_and_its_figures_come_on_demand(tmp_path):
    out = nnlab("train", "-m", *TINY, "trainer.seed=range(9)", f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "s" / "trainer.seed=4"
    assert "sweep.light: one of a stack of 9" in (run / "train.log").read_text() and not list(run.glob("*.png"))
    out = nnlab("report", str(tmp_path / "s"), "--figures", cwd=tmp_path)
    assert out.returncode == 0 and (run / "decision_boundary.png").is_file(), out.stderr[-2000:]
