"""Checkpoints hold plain types, are written atomically, and strangers are refused."""

from __future__ import annotations

import pickle

import pytest
import torch

from nnlab.errors import ConfigError
from nnlab.run_files import checkpoint


def test_round_trip_and_no_temporary_left(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = checkpoint.save(tmp_path / "ckpt" / "last.pt", {"model": model.state_dict(), "epoch": 3})
    state = checkpoint.load(path)
    assert state["epoch"] == 3 and torch.equal(state["model"]["weight"], model.weight)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = checkpoint.save(tmp_path / "last.pt", {"epoch": 1})
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        checkpoint.save(path, {"epoch": 2, "bad": lambda: None})  # not picklable
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_files_that_are_not_nnlab_checkpoints_are_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable nnlab checkpoint"):
        checkpoint.load(tmp_path / "junk.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not an nnlab checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="no checkpoint"):
        checkpoint.load(tmp_path / "missing.pt")
