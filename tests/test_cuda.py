"""The CUDA path, on a GPU only (CI has none, so these skip there): data and model resident on the device,
no host-device synchronisation per step, bf16/fp16 autocast with the grad scaler, torch.compile,
channels-last for the CNN, same seed same numbers."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from conftest import TINY, metrics, nnlab, summary, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = ["trainer.device=cuda", "trainer.progress=false"]


def experiment(*overrides: str):
    from nnlab.cli.command_line import compose
    from nnlab.training.setup import setup

    return setup(compose([*CUDA, *overrides]))


def syncs_in_fit(run_dir: Path, n_train: int) -> tuple[int, int]:
    """(host-device synchronisations torch reported during one epoch of the loop (train.train, closing
    included), optimizer steps taken)."""
    from nnlab.cli.command_line import compose
    from nnlab.training.loop import train
    from nnlab.training.member import prepare

    cfg = compose(
        [
            *CUDA,
            f"data.source.n_train={n_train}",
            "data.source.n_test=64",
            "trainer.epochs=1",
            "trainer.batch_size=16",
            "trainer.log_every=50",
            "diagnostics.every=50",
        ]
    )
    member = prepare(cfg, run_dir, quiet=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train([member])
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught), member.exp.steps_per_epoch


def test_data_and_model_live_on_the_gpu():
    exp = experiment(*TINY)
    assert exp.data.train.x.is_cuda and exp.data.train.y.is_cuda and exp.data.test.x.is_cuda
    assert all(p.is_cuda for p in exp.model.parameters())


def test_no_host_sync_per_step(tmp_path):
    """Twice the steps may add only the few syncs of the extra logging windows (every 50 steps: 9 per 100 steps
    on an H100), not one per step (which would add >= 100)."""
    few, steps_few = syncs_in_fit(tmp_path / "few", 2000)
    many, steps_many = syncs_in_fit(tmp_path / "many", 4000)
    extra_steps = steps_many - steps_few
    assert extra_steps >= 80, (steps_few, steps_many)
    assert many - few <= extra_steps // 5, (few, many, extra_steps)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_trains(tmp_path, precision):
    run, _ = train(tmp_path, *TINY, *CUDA, f"trainer.precision={precision}", "trainer.epochs=5")
    s = summary(run)
    assert s["status"] == "ok" and s["device"].startswith("cuda")
    rows = [r for r in metrics(run) if "loss/train" in r]
    assert rows[-1]["loss/train"] < rows[0]["loss/train"]
    scaler = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["scaler"]
    assert bool(scaler) == (precision == "fp16")  # the grad scaler's state: fp16 only (bf16 needs none)


def test_compiled_channels_last_cnn(tmp_path, cifar_root):
    exp = experiment(
        "data=cifar10", f"data.source.root={cifar_root}", "data.source.download=false", "model=cnn_classic"
    )
    conv = next(m for m in exp.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert exp.data.train.x[:4].is_contiguous(memory_format=torch.channels_last)  # its batches
    run, _ = train(
        tmp_path,
        *CUDA,
        "data=cifar10",
        f"data.source.root={cifar_root}",
        "data.source.download=false",
        "model=cnn_classic",
        "trainer.compile=true",
        "trainer.precision=bf16",
        "trainer.epochs=2",
        "trainer.batch_size=16",
    )
    assert summary(run)["status"] == "ok" and math.isfinite(summary(run)["metrics"]["loss/train"])


def test_same_seed_same_numbers_on_the_gpu(tmp_path):
    runs = [train(tmp_path, *TINY, *CUDA, "trainer.deterministic=true", run_dir=f"r{i}")[0] for i in range(2)]
    a, b = (
        [
            {k: v for k, v in r.items() if not k.startswith("time/") and k != "throughput/examples_per_s"}
            for r in metrics(run)
        ]
        for run in runs
    )
    assert a == b


def test_batch_size_find_on_the_gpu(tmp_path):
    """The peak of torch's CUDA allocator per step: it grows with the batch, and the bound picks the size."""
    import json

    def find(name, *overrides):
        run = tmp_path / name
        out = nnlab(
            "batch-size-find",
            *CUDA,
            "model.hidden=[512,512]",
            "data.source.n_train=5000",
            "data.source.n_test=100",
            "batch_size_find.start=256",
            *overrides,
            f"hydra.run.dir={run}",
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        return json.loads((run / "batch_size_find.json").read_text())

    free = find("free", "batch_size_find.max_memory_mb=100000")
    assert free["device"].startswith("cuda") and free["stopped_by"] == "data" and free["largest"] == 4000
    memory = free["memory_mb"]
    assert all(a <= b for a, b in zip(memory, memory[1:])) and memory[1] < memory[2], memory
    bound = find("bound", f"batch_size_find.max_memory_mb={(memory[1] + memory[2]) / 2}")
    assert bound["stopped_by"] == "memory" and bound["largest"] == free["sizes"][1] == 512
