"""What is measured besides the loss, by task: accuracy for classification; MSE, MAE and R^2 for
regression. One place for the names, which way is better, and the arithmetic.

A split is measured in batches: `sums(predictions, targets)` returns a tensor of running sums that stays
on the device (added batch after batch, no host sync), and `finish(sums, n)` turns the total into numbers
once. The task comes from the data (`Data.kind`): "regression" for regression sets, else classification.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where tensors are summed: `nnlab report` does without it
    from torch import Tensor

HIGHER_IS_BETTER = frozenset({"acc", "r2"})  # the rest (loss, mse, mae) go down
ALL = ("loss", "acc", "mse", "mae", "r2")  # every name a run may log with a split (loss/val, r2/test, ...)


def names(kind: str) -> tuple[str, ...]:
    """The metrics a run of this data kind logs beside its loss (loss/train, acc/val, r2/test, ...)."""
    return ("mse", "mae", "r2") if kind == "regression" else ("acc",)


def score(kind: str) -> str:
    """The one 'how good is the fit' number, higher is better: accuracy, or R^2 for regression
    (plotted beside the loss, used by the over/underfitting alarm and `nnlab check`)."""
    return "r2" if kind == "regression" else "acc"


RANGES = {
    "acc": (0.0, 1.0),
    "r2": (-math.inf, 1.0),
    "loss": (0.0, math.inf),
    "mse": (0.0, math.inf),
    "mae": (0.0, math.inf),
}


def within(metric: str, value: float) -> float:
    """`value` inside what `metric` (`acc/val`, `loss`) can be: a band's edge is cut there, never drawn at 1.1."""
    low, high = RANGES.get(metric.split("/")[0], (-math.inf, math.inf))
    return min(max(value, low), high)


LABELS = {"acc": "accuracy", "r2": "R²", "loss": "loss", "mse": "MSE", "mae": "MAE"}  # names for people


def better(metric: str) -> int:
    """+1 where a higher value of `metric` (e.g. "acc/val") is better, -1 where lower is."""
    return 1 if metric.split("/")[0] in HIGHER_IS_BETTER else -1


def prediction(kind: str, loss_fn, out: Tensor) -> Tensor:
    """What the metrics compare with the targets: the class (the loss's `predict`), or for regression
    the predicted value (the loss's output `link`)."""
    return loss_fn.link(out) if kind == "regression" else loss_fn.predict(out)


def sums(kind: str, pred: Tensor, y: Tensor) -> Tensor:
    """Running sums for one batch: [correct] for classification; per target dimension, the sums of
    squared errors, absolute errors, targets and squared targets for regression (enough for R^2)."""
    return stack_sums(kind, pred.unsqueeze(0), y.unsqueeze(0))[0]


def stack_sums(kind: str, pred: Tensor, y: Tensor) -> Tensor:
    """sums() of K members' batches at once (pred and y: [K, B, ...]), one row each."""
    import torch

    if kind != "regression":
        return (pred == y).sum(1).float().unsqueeze(1)
    K, B = y.shape[:2]
    pred, y = pred.float().reshape(K, B, -1), y.float().reshape(K, B, -1)
    err = pred - y
    return torch.cat([err.square().sum(1), err.abs().sum(1), y.sum(1), y.square().sum(1)], 1)


def finish(kind: str, total: Tensor | list[float], n: int) -> dict[str, float]:
    """The metrics from a split's summed `sums` over `n` examples (one host sync, here)."""
    values = total.tolist() if hasattr(total, "tolist") else list(total)
    if kind != "regression":
        return {"acc": values[0] / n}
    d = len(values) // 4
    se, ae, sy, syy = (values[i * d : (i + 1) * d] for i in range(4))
    r2 = []
    for j in range(d):  # R^2 per target, then their mean (scikit-learn's 'uniform_average')
        ss_tot = syy[j] - sy[j] ** 2 / n
        r2.append(1 - se[j] / ss_tot if ss_tot > 1e-12 else 0.0)
    return {"mse": sum(se) / (n * d), "mae": sum(ae) / (n * d), "r2": sum(r2) / d}


def worst_objective(metric: str) -> float:
    """What a sweeper sees for a run that diverged or failed: the worst possible value."""
    metric = followed(metric)
    if metric.startswith("acc/"):
        return 0.0
    return -math.inf if better(metric) > 0 else math.inf  # R^2 has no lower bound


def followed(metric: str) -> str:
    """The metric that stands for an early_stopping.metric: itself; for `last` (no metric watched), the
    training loss (what a sweeper optimizes and a stack's progress line shows)."""
    return "loss/train" if metric == "last" else metric


def objective(summary: dict[str, Any], metric: str) -> float:
    """The value a sweeper optimizes: the run's final `metric` (the early_stopping metric; `last`: the
    training loss), or the worst value where the run did not finish well."""
    metric = followed(metric)
    value = summary["metrics"].get(metric)
    if summary["status"] != "ok" or value is None or not math.isfinite(value):
        return worst_objective(metric)
    return value
