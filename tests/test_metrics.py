"""metrics.py: the names, which way is better, the arithmetic over batches, and the sweep objective."""

from __future__ import annotations

import math

import pytest
import torch

from nnlab import metrics


def test_better_and_the_score():
    assert metrics.better("acc/val") == metrics.better("r2/test") == 1
    assert metrics.better("loss/val") == metrics.better("mse/train") == metrics.better("mae/val") == -1
    assert metrics.score("regression") == "r2" and metrics.score("points") == metrics.score("images") == "acc"
    assert metrics.LABELS["r2"] == "R²" and metrics.LABELS["acc"] == "accuracy"


def test_sums_over_batches_equal_the_whole_split():
    torch.manual_seed(0)
    pred, y = torch.randn(50, 2), torch.randn(50, 2)
    whole = metrics.finish("regression", metrics.sums("regression", pred, y), 50)
    parts = metrics.sums("regression", pred[:20], y[:20]) + metrics.sums("regression", pred[20:], y[20:])
    assert metrics.finish("regression", parts, 50) == pytest.approx(whole)
    assert whole["mse"] == pytest.approx((pred - y).square().mean().item(), rel=1e-5)
    r2 = [1 - (pred[:, j] - y[:, j]).square().sum() / (y[:, j] - y[:, j].mean()).square().sum() for j in range(2)]
    assert whole["r2"] == pytest.approx(sum(r2).item() / 2, rel=1e-5)
    labels = torch.tensor([0, 1, 1, 2])
    assert metrics.finish("points", metrics.sums("points", torch.tensor([0, 1, 2, 2]), labels), 4) == {"acc": 0.75}


def test_the_objective_is_the_worst_value_for_a_run_that_did_not_finish_well():
    ok = {"status": "ok", "metrics": {"acc/val": 0.9, "loss/val": 0.3, "r2/val": 0.5}}
    assert metrics.objective(ok, "acc/val") == 0.9 and metrics.objective(ok, "loss/val") == 0.3
    diverged = {**ok, "status": "diverged"}
    assert metrics.objective(diverged, "acc/val") == 0.0
    assert metrics.objective(diverged, "loss/val") == math.inf and metrics.objective(diverged, "r2/val") == -math.inf
    assert metrics.objective({"status": "ok", "metrics": {"loss/val": math.nan}}, "loss/val") == math.inf
    assert metrics.objective({"status": "ok", "metrics": {}}, "acc/val") == 0.0
