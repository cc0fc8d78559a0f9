"""`nnlab batch-size-find`: the largest batch within a memory bound, and the linearly scaled rate."""

from __future__ import annotations

import json

import pytest

from conftest import nnlab

# on the CPU, where the memory is counted tensor by tensor (a GPU's is its allocator's peak: tests/test_cuda.py)
WIDE = [
    "model.hidden=[512,512]",
    "data.source.n_train=5000",
    "data.source.n_test=100",
    "trainer.batch_size=32",
    "optimizer.lr=0.01",
    "trainer.device=cpu",
]


def find(tmp_path, *overrides):
    run = tmp_path / "find"
    out = nnlab("batch-size-find", *WIDE, *overrides, f"hydra.run.dir={run}", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads((run / "batch_size_find.json").read_text()), out.stdout


def test_the_largest_batch_within_the_bound_and_its_rate(tmp_path):
    result, stdout = find(tmp_path, "batch_size_find.max_memory_mb=12")
    sizes, memory, largest = result["sizes"], result["memory_mb"], result["largest"]
    assert result["stopped_by"] == "memory" and sizes[0] == 32 and largest == sizes[-2]
    assert all(b == 2 * a for a, b in zip(sizes, sizes[1:]))
    assert memory[-2] <= 12 < memory[-1] and all(a < b for a, b in zip(memory, memory[1:]))
    # weights, gradients and Adam state are fixed; the saved activations grow linearly with the batch
    assert memory[-1] - memory[-2] == pytest.approx(2 * (memory[-2] - memory[-3]), rel=0.05)
    # Adam: the square-root rule's rate first, then halved while a short trial does not train
    assert result["rule"] == "sqrt" and result["tried"][0]["lr"] == pytest.approx(0.01 * (largest / 32) ** 0.5)
    assert all(
        b["lr"] == pytest.approx(a["lr"] / 2) or b["lr"] == 0.01 for a, b in zip(result["tried"], result["tried"][1:])
    )
    if result["tried"][-1]["trains"]:  # the rule's rate itself, or half the first that trained (a margin)
        assert result["suggested_lr"] in (result["tried"][0]["lr"], max(0.01, result["tried"][-1]["lr"] / 2))
    else:
        assert "suggested_lr" not in result
    assert f"trainer.batch_size={largest}" in stdout


def test_the_whole_training_set_may_fit(tmp_path):
    result, _ = find(tmp_path, "batch_size_find.max_memory_mb=100000", "data.source.n_train=300")
    assert result["stopped_by"] == "data" and result["largest"] == 240  # 300 less 20% for validation
