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
