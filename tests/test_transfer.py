"""transfer.py: which layers are copied from another run, and what each mode trains."""

from __future__ import annotations

import pytest
import torch

from nnlab.errors import ConfigError
from nnlab.nn.mlp import MLP
from nnlab.run_files import checkpoint
from nnlab.training import transfer


def _saved(tmp_path, model) -> str:
    checkpoint.save(tmp_path / "run" / "checkpoints" / "last.pt", {"model": model.state_dict()})
    return str(tmp_path / "run")


def test_matching_layers_are_copied_the_head_is_not(tmp_path):
    torch.manual_seed(0)
    source = MLP((2,), 5, hidden=(8, 8))
    target = MLP((2,), 3, hidden=(8, 8))
    head_before = target.head.weight.clone()
    reused = transfer.load_matching(target, _saved(tmp_path, source))
    assert reused == {"hidden.0.0.weight", "hidden.0.0.bias", "hidden.1.0.weight", "hidden.1.0.bias"}
    assert torch.equal(target.hidden[0][0].weight, source.hidden[0][0].weight)
    assert torch.equal(target.head.weight, head_before)


def test_no_matching_layer_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no layer of .* matches this model"):
        transfer.load_matching(MLP((3,), 2, hidden=(4,)), _saved(tmp_path, MLP((2,), 2, hidden=(8,))))


def test_each_mode_trains_what_it_says():
    model = MLP((2,), 2, hidden=(4,))
    reused = {"hidden.0.0.weight", "hidden.0.0.bias"}
    assert len(transfer.parameter_groups(model, reused, "none", 0.1, 0.1)) == 1
    new, old = transfer.parameter_groups(model, reused, "fine_tune", 0.1, 0.5)
    assert old["lr"] == pytest.approx(0.05) and "lr" not in new and len(new["params"]) == 2
    (only,) = transfer.parameter_groups(model, reused, "feature_extraction", 0.1, 0.5)
    assert len(only["params"]) == 2 and not model.hidden[0][0].weight.requires_grad


def test_freeze_then_fine_tune_trains_the_head_on_frozen_layers_then_fine_tunes_them_in_one_run(tmp_path):
    """Note 004: the reused layers stay as pretrained for transfer.frozen_epochs while the new head learns,
    then train at optimizer.lr * reused_lr_factor; the head goes on from where it was (one run); resume
    across the unfreeze continues exactly."""
    from conftest import TINY, nnlab, summary, train

    source, _ = train(tmp_path, *TINY, "model.hidden=[16,16]", run_dir="source")
    args = [
        "model.hidden=[16,16]",
        "data=circles",
        f"transfer.init_from={source}",
        "transfer.mode=freeze_then_fine_tune",
        "transfer.frozen_epochs=2",
        "trainer.keep_checkpoints=4",
        "trainer.epochs=4",
        "trainer.progress=false",
        "data.source.n_train=160",
    ]
    run, out = train(tmp_path, *args, run_dir="ftft")
    pre = torch.load(source / "checkpoints" / "last.pt", weights_only=True)["model"]
    epoch = {e: torch.load(run / "checkpoints" / f"epoch_{e:04d}.pt", weights_only=True)["model"] for e in (1, 2, 3, 4)}
    hidden = [k for k in pre if not k.startswith("head.")]
    assert all(torch.equal(epoch[e][k], pre[k]) for e in (1, 2) for k in hidden)  # frozen for two epochs
    assert all(not torch.equal(epoch[3][k], pre[k]) for k in hidden if k.endswith("weight"))  # then fine-tuned
    assert not torch.equal(epoch[1]["head.weight"], epoch[2]["head.weight"])  # the head learns meanwhile
    assert "epoch 3: the reused layers unfreeze and fine-tune (at the rate x0.1)" in (run / "train.log").read_text()
    assert summary(run)["status"] == "ok"
    # cut after epoch 3 and resumed: the reused layers train on, the same weights as the run straight through
    half, _ = train(
        tmp_path, *args[:-3], "trainer.epochs=3", "trainer.progress=false", "data.source.n_train=160", run_dir="half"
    )
    out = nnlab("train", f"resume={half}", "trainer.epochs=4", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    end = torch.load(half / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(end[k], epoch[4][k]) for k in end)


@pytest.mark.parametrize("frozen", ["4", "9"])
def test_freeze_then_fine_tune_that_never_unfreezes_is_refused(tmp_path, frozen):
    from conftest import TINY, nnlab

    source = tmp_path / "src"
    checkpoint.save(source / "checkpoints" / "last.pt", {"model": MLP((2,), 2, hidden=(8,)).state_dict()})
    out = nnlab(
        "train",
        *TINY,
        "trainer.epochs=4",
        f"transfer.init_from={source}",
        "transfer.mode=freeze_then_fine_tune",
        f"transfer.frozen_epochs={frozen}",
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "would never unfreeze" in out.stderr, out.stderr
