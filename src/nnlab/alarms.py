"""Pathology alarms: pure functions of numbers the run has measured and the thresholds in
`conf/train.yaml: alarms`. Each returns an Alarm naming the likely cause and the knob to try, or None."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional


@dataclass
class Alarm:
    name: str
    step: int
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def initial_loss(loss: float, expected: float, tolerance: float, step: int = 0) -> Optional[Alarm]:
    """The loss at initialization should be near its chance value (ln C for cross-entropy)."""
    if math.isfinite(loss) and abs(loss - expected) <= tolerance * expected:
        return None
    return Alarm(
        "initial_loss",
        step,
        f"initial loss {loss:.4g} is far from its expected value {expected:.4g} (chance level): the weights "
        "are too large or too biased at initialization. Try init=he_normal or init=xavier_normal, or a smaller init.std.",
    )


def divergence(loss: float, initial: float, factor: float, step: int) -> Optional[Alarm]:
    """Loss above factor x the initial loss, or NaN/Inf: the run is stopped."""
    if math.isfinite(loss) and loss <= factor * initial:
        return None
    what = "is not a number" if not math.isfinite(loss) else f"{loss:.4g} is above {factor:g}x the initial {initial:.4g}"
    return Alarm(
        "divergence",
        step,
        f"training diverged: the loss {what}. The learning rate is too high for this model; lower optimizer.lr "
        "(nnlab lr-find suggests one) or clip gradients (regularization.clip_grad_norm=1).",
    )


def flat_loss(initial: float, recent: float, min_drop: float, step: int) -> Optional[Alarm]:
    """After `flat_after_steps`, a loss that has not dropped by min_drop (relative) is flat."""
    if initial - recent > min_drop * initial:
        return None
    return Alarm(
        "flat_loss",
        step,
        f"the loss is flat after {step} steps ({initial:.4g} -> {recent:.4g}): the learning rate is too low, or "
        "the initialization keeps units identical or silent (init=zeros, normal_small). Raise optimizer.lr or use init=he_normal.",
    )


def gradient_flow(ratio: Optional[float], low: float, high: float, step: int) -> Optional[Alarm]:
    """First- to last-layer gradient norm ratio outside [low, high]: vanishing or exploding gradients."""
    if ratio is None or low <= ratio <= high:
        return None
    if ratio < low:
        return Alarm(
            "vanishing_gradients",
            step,
            f"vanishing gradients: the first layer's gradient norm is {ratio:.2g}x the last layer's. Saturating "
            "activations in a deep net starve the early layers; try activation=relu with init=he_normal, or model.batch_norm=true.",
        )
    return Alarm(
        "exploding_gradients",
        step,
        f"exploding gradients: the first layer's gradient norm is {ratio:.2g}x the last layer's. Use a smaller "
        "init (init=xavier_normal/he_normal), model.batch_norm=true, or regularization.clip_grad_norm=1.",
    )


def dead_units(stats: dict[str, float], threshold: float, step: int) -> Optional[Alarm]:
    worst = _worst_above(stats, "dead_frac/", threshold)
    if worst is None:
        return None
    layer, frac = worst
    return Alarm(
        "dead_units",
        step,
        f"{frac:.0%} of the units of {layer} are dead (zero for every probe example; 20-30% is common). "
        "A too-high learning rate or a negative bias kills ReLUs; lower optimizer.lr, set init.bias=0.01, or use "
        "activation=leaky_relu / elu.",
    )


def saturation(stats: dict[str, float], threshold: float, step: int) -> Optional[Alarm]:
    worst = _worst_above(stats, "saturated_frac/", threshold)
    if worst is None:
        return None
    layer, frac = worst
    return Alarm(
        "saturation",
        step,
        f"{frac:.0%} of the activations of {layer} are saturated (at the sigmoid/tanh bounds, where the gradient "
        "vanishes). The weights are too large: use init=xavier_normal, data.preprocess=standardize, or activation=relu.",
    )


def update_ratio(stats: dict[str, float], low: float, high: float, step: int) -> Optional[Alarm]:
    values = {k: v for k, v in stats.items() if k.startswith("update_ratio/") and math.isfinite(v)}
    if not values:
        return None
    mean_log = sum(math.log10(max(v, 1e-30)) for v in values.values()) / len(values)
    typical = 10**mean_log
    if low <= typical <= high:
        return None
    direction = "too low: raise optimizer.lr" if typical < low else "too high: lower optimizer.lr"
    return Alarm(
        "update_ratio",
        step,
        f"the update/weight ratio ||dW||/||W|| is about {typical:.1e} per step (the notes want ~1e-3): the learning "
        f"rate is probably {direction}.",
    )


def fit_gap(train: float, val: float, gap: float, underfit: float, step: int, what: str = "accuracy") -> Optional[Alarm]:
    """A low training score (underfitting), or a train/validation gap (overfitting). The score is the
    accuracy, or R^2 for regression (`what`)."""
    if train < underfit:
        return Alarm(
            "underfitting",
            step,
            f"underfitting: train {what} is only {train:.3f} (validation {val:.3f}). Give the model more "
            "capacity (model.hidden), train longer (trainer.epochs), or raise optimizer.lr."
            + (" With outliers in the training targets (data.source.outliers), R^2 on them stays low however good "
               "the fit: compare r2/test, measured on clean targets."
               if what == "R^2" else ""),
        )
    if train - val > gap:
        return Alarm(
            "overfitting",
            step,
            f"overfitting: train {what} {train:.3f} vs validation {val:.3f}. Regularize "
            "(model.dropout, optimizer.weight_decay, early_stopping.patience, data.augment) or use more data.",
        )
    return None


def _worst_above(stats: dict[str, float], prefix: str, threshold: float) -> Optional[tuple[str, float]]:
    """The layer with the highest `prefix` statistic, as (layer, value), when that value exceeds threshold."""
    values = [(k[len(prefix) :], v) for k, v in stats.items() if k.startswith(prefix)]
    worst = max(values, key=lambda kv: kv[1]) if values else None
    return worst if worst is not None and worst[1] > threshold else None
