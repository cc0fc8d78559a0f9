"""Nothing runs from a data file or a run folder: crafted files that would write a marker are refused
with one paragraph, and the marker never appears."""

from __future__ import annotations

import os
import pickle

import torch
from omegaconf import OmegaConf

from conftest import TINY, nnlab, train, write_tiny_cifar10


class _Payload:
    """Unpickled, this would call os.system and write the marker."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_cifar_batch_does_not_run(tmp_path):
    root = write_tiny_cifar10(tmp_path / "data")
    marker = tmp_path / "pwned"
    with open(root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": _Payload(marker), "labels": [0]}, f, protocol=2)
    out = nnlab(
        "train",
        "data=cifar10",
        f"data.source.root={root}",
        "data.source.download=false",
        "model=cnn",
        *TINY[2:],
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "is not a valid CIFAR-10 batch file" in out.stderr and "posix.system" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not marker.exists()
    assert not (tmp_path / "outputs").exists()  # an error before training leaves no run folder


def test_an_ensemble_member_whose_config_calls_torch_load_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = tmp_path / "payload.pt"
    torch.save(_Payload(marker), payload)
    a, _ = train(tmp_path, *TINY, run_dir="sweep/a")
    train(tmp_path, *TINY, "trainer.seed=1", run_dir="sweep/b")
    cfg = OmegaConf.load(a / "config.yaml")
    cfg.data.source = {"_target_": "torch.load", "f": str(payload), "weights_only": False}
    (a / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    out = nnlab("ensemble", str(tmp_path / "sweep"), cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "data.source._target_='torch.load' is invalid: targets must start with one of" in out.stderr
    assert "Traceback" not in out.stderr and not marker.exists()
    ok = OmegaConf.load(tmp_path / "sweep" / "b" / "config.yaml")
    (a / "config.yaml").write_text(OmegaConf.to_yaml(ok).replace("hidden:\n  - 64\n  - 64", "hidden:\n  - 8"))
    out = nnlab("ensemble", str(tmp_path / "sweep"), cwd=tmp_path)  # a member whose checkpoint is of another shape
    assert out.returncode == 2 and "does not fit the model" in out.stderr and "Traceback" not in out.stderr
