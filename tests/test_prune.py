"""nnlab prune: magnitude pruning through torch.nn.utils.prune, a short fine-tune that keeps the zeros,
a new run folder per pruned run; through the real CLI on tiny data."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY, nnlab, train

WEIGHTS = ("hidden.0.0.weight", "hidden.1.0.weight", "head.weight")


def weights(run, which="last"):
    state = torch.load(run / "checkpoints" / f"{which}.pt", weights_only=True)["model"]
    return {k: state[k] for k in WEIGHTS}


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_zeros_the_smallest_weights_and_the_fine_tune_keeps_them_zero(tmp_path, scope):
    source, _ = train(tmp_path, *TINY, "model.hidden=[32,32]", run_dir="source")
    out = nnlab(
        "prune",
        str(source),
        "prune.amount=0.8",
        f"prune.scope={scope}",
        f"hydra.sweep.dir={tmp_path / 'pruned'}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "pruned" / "pruned"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["epochs_run"] == 2  # the default fine-tune
    assert summary["pruned"]["zero_fraction"] == pytest.approx(0.8, abs=0.002) and summary["pruned"]["scope"] == scope
    before, after = weights(source, "best"), weights(run)
    everything = torch.cat([w.flatten() for w in before.values()]).abs()
    threshold = everything.kthvalue(int(0.8 * len(everything))).values
    for k in WEIGHTS:
        zero = after[k] == 0
        if scope == "layer":
            assert zero.float().mean() == pytest.approx(0.8, abs=0.02), k
        else:  # one threshold: what survived was above it in the source
            assert (before[k].abs()[~zero] >= threshold).all(), k
    assert "prune.source" in (run / "train.log").read_text()


def test_a_folder_of_runs_is_pruned_run_by_run_and_refusals_are_one_paragraph(tmp_path):
    out = nnlab("train", "-m", *TINY, "trainer.seed=0,1", f"hydra.sweep.dir={tmp_path / 'seeds'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    out = nnlab(
        "prune",
        str(tmp_path / "seeds"),
        "prune.amount=0.5",
        "trainer.epochs=1",
        f"hydra.sweep.dir={tmp_path / 'pruned'}",
        cwd=tmp_path,
    )
    assert out.returncode == 0 and "nnlab report" in out.stdout, out.stderr[-2000:]
    pruned = sorted(p.parent.name for p in (tmp_path / "pruned").rglob("summary.json"))
    assert pruned == ["trainer.seed=0", "trainer.seed=1"]
    seeds = [json.loads((tmp_path / "pruned" / n / "summary.json").read_text())["seed"] for n in pruned]
    assert seeds == [0, 1]  # each with its own saved settings
    for args, says in (
        ([str(tmp_path / "nothing")], "does not exist"),
        ([str(tmp_path / "seeds"), "prune.amount=1"], "prune.amount=1"),
        ([str(tmp_path / "seeds"), "prune.scope=neuron"], "prune.scope"),
        ([str(tmp_path / "seeds"), "-m"], "not -m"),
    ):
        out = nnlab("prune", *args, cwd=tmp_path)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
