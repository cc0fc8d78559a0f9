"""Pathology alarms: pure functions of numbers the run has measured and the thresholds in
`conf/train.yaml: alarms`. Each returns an Alarm naming the likely cause, or None.

The advice is data: an alarm's `fixes` are the override sets it suggests (`("activation=relu",
"init=he_normal")`; `optimizer.lr*10` scales the run's own value), its message says them in words
(advice()), and `nnlab doctor` trains them (doctor.py): the words and what is tested cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

Fix = tuple[str, ...]  # one candidate: overrides applied together (KEY=VALUE, or KEY*FACTOR of the run's value)


@dataclass
class Alarm:
    name: str
    step: int
    message: str
    fixes: tuple[Fix, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


def _raise(name: str, step: int, cause: str, *fixes: Fix, also: str = "") -> Alarm:
    """The alarm with its message: the cause, then its fixes in words (and `also`: advice no override says)."""
    return Alarm(name, step, f"{cause} Try {advice(fixes)}{also}.", tuple(fixes))


def advice(fixes: Sequence[Fix]) -> str:
    """`optimizer.lr x0.1, init.bias=0.01 or activation=relu with init=he_normal`."""
    words = [" with ".join(_word(o) for o in fix) for fix in fixes]
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1]


def _word(override: str) -> str:
    key, star, factor = override.partition("*")
    return f"{key} x{factor}" if star else override


def scaled(override: str) -> tuple[str, float] | None:
    """(`optimizer.lr`, 10.0) for `optimizer.lr*10`; None for a plain KEY=VALUE."""
    key, star, factor = override.partition("*")
    return (key, float(factor)) if star and "=" not in override else None


def initial_loss(loss: float, expected: float, tolerance: float, step: int = 0) -> Alarm | None:
    """The loss at initialization should be near its chance value (ln C for cross-entropy)."""
    if math.isfinite(loss) and abs(loss - expected) <= tolerance * expected:
        return None
    return _raise(
        "initial_loss",
        step,
        f"initial loss {loss:.4g} is far from its expected value {expected:.4g} (chance "
        "level): the weights are too large or too biased at initialization.",
        ("init=he_normal",),
        ("init=xavier_normal",),
    )


def divergence(loss: float, initial: float, factor: float, step: int) -> Alarm | None:
    """Loss above factor x the initial loss, or NaN/Inf: the run is stopped."""
    if math.isfinite(loss) and loss <= factor * initial:
        return None
    what = (
        "is not a number" if not math.isfinite(loss) else f"{loss:.4g} is above {factor:g}x the initial {initial:.4g}"
    )
    return _raise(
        "divergence",
        step,
        f"training diverged: the loss {what}. The learning rate is too high for this "
        "model (nnlab lr-find suggests one), or its gradients need clipping.",
        ("optimizer.lr*0.1",),
        ("optimizer.lr*0.01",),
        ("regularization.clip_grad_norm=1",),
    )


def flat_loss(initial: float, recent: float, min_drop: float, step: int, start: str = "") -> Alarm | None:
    """After `flat_after_steps`, a loss that has not dropped by min_drop (relative) is flat. `start`: how the
    weights started (diagnostics.start_form): the cause named and fixed first is the one measured."""
    if initial - recent > min_drop * initial:
        return None
    flat = f"the loss is flat after {step} steps ({initial:.4g} -> {recent:.4g}): "
    if start in STARTS:
        return _raise("flat_loss", step, flat + STARTS[start], ("init=he_normal",), ("init=xavier_normal",))
    return _raise(
        "flat_loss",
        step,
        flat + "the learning rate is probably too low, or the gradient vanishes on its way through the layers.",
        ("optimizer.lr*10",),
        ("activation=relu", "init=he_normal"),
    )


STARTS = {  # a measured start (diagnostics.start_form) that explains a flat loss or dead units by itself
    "symmetric": "every unit of a layer started with the same weights (a constant initialization): each gets "
    "the same gradient, so the layer stays one unit.",
    "silent": "the initial weights are so small that the signal fades layer after layer (the hidden "
    "activations start near zero), and the gradient with it.",
}


def gradient_flow(ratio: float | None, low: float, high: float, step: int) -> Alarm | None:
    """First- to last-layer gradient norm ratio outside [low, high]: vanishing or exploding gradients."""
    if ratio is None or low <= ratio <= high:
        return None
    if ratio < low:
        return _raise(
            "vanishing_gradients",
            step,
            f"vanishing gradients: the first layer's gradient norm is {ratio:.2g}x "
            "the last layer's. Saturating activations in a deep net starve the early layers.",
            ("activation=relu", "init=he_normal"),
            ("model.batch_norm=true",),
        )
    return _raise(
        "exploding_gradients",
        step,
        f"exploding gradients: the first layer's gradient norm is {ratio:.2g}x "
        "the last layer's: the initial weights are too large.",
        ("init=xavier_normal",),
        ("init=he_normal",),
        ("model.batch_norm=true",),
        ("regularization.clip_grad_norm=1",),
    )


def dead_units(stats: dict[str, float], threshold: float, step: int, start: str = "") -> Alarm | None:
    """A layer whose rectifier units are dead: zero for every probe example (dead_frac) and passing no
    gradient back (no_grad_frac, where measured: a leaky unit below zero still learns). `start`
    (diagnostics.start_form): a start that silences the units by itself is named and fixed first; else the
    rate and the bias."""
    dead_and_stuck = {
        k: stats.get(k.replace("/dead_frac/", "/no_grad_frac/"), v)
        for k, v in stats.items()
        if k.startswith("stats/dead_frac/")
    }
    worst = _worst_above(dead_and_stuck, "stats/dead_frac/", threshold)
    if worst is None:
        return None
    layer, frac = worst
    dead = (
        f"{frac:.0%} of the units of {layer} are dead (zero for every probe example, passing no gradient back; "
        "20-30% is common): "
    )
    if start in STARTS:
        return _raise("dead_units", step, dead + STARTS[start], ("init=he_normal",), ("init=xavier_normal",))
    return _raise(
        "dead_units",
        step,
        dead + "a too-high learning rate (or a negative initial bias) pushes ReLUs where they never fire again.",
        ("optimizer.lr*0.1",),
        ("init.bias=0.01",),
        ("activation=leaky_relu",),
        ("activation=elu",),
    )


def saturation(stats: dict[str, float], threshold: float, step: int) -> Alarm | None:
    worst = _worst_above(stats, "stats/saturated_frac/", threshold)
    if worst is None:
        return None
    layer, frac = worst
    return _raise(
        "saturation",
        step,
        f"{frac:.0%} of the activations of {layer} are saturated (at the sigmoid/tanh "
        "bounds, where the gradient vanishes): the inputs or the weights are too large.",
        ("data.preprocess=standardize",),
        ("init=xavier_normal",),
        ("activation=relu",),
    )


def update_ratio(stats: dict[str, float], low: float, high: float, step: int, lr_scale: float = 1.0) -> Alarm | None:
    """A typical update/weight ratio far from ~1e-3. `lr_scale`: the schedule's rate now over the optimizer's
    rate; where a schedule has brought it below a tenth (a warm-up's start, a decay's or a cycle's end: small
    steps by design), a low ratio says nothing about optimizer.lr, and nothing is raised."""
    values = {k: v for k, v in stats.items() if k.startswith("stats/update_ratio/") and math.isfinite(v)}
    if not values:
        return None
    mean_log = sum(math.log10(max(v, 1e-30)) for v in values.values()) / len(values)
    typical = 10**mean_log
    if low <= typical <= high or (typical < low and lr_scale < 0.1):
        return None
    power = min(4, max(-4, round(math.log10(1e-3 / typical))))  # the rate x10**power brings the ratio to ~1e-3
    powers = [power, power - (1 if power > 0 else -1)] if abs(power) >= 2 else [power or (1 if typical < low else -1)]
    return _raise(
        "update_ratio",
        step,
        f"the update/weight ratio ||dW||/||W|| is about {typical:.1e} per step (the "
        f"notes want ~1e-3): the learning rate is probably too {'low' if typical < low else 'high'}.",
        *((f"optimizer.lr*{10.0**p:g}",) for p in powers),
    )


# The training loss curve's shapes (note 001's figure of four curves; `flat` is the flat_loss alarm's): what
# each says about the learning rate
CURVES = {
    "good": "drops fast, then slowly, to a low loss",
    "too_low": "decays almost linearly, or still creeps down at a high loss: the learning rate is too low",
    "too_high": "plateaus early at a high loss and bounces there: the learning rate is too high",
    "far_too_high": "explodes (diverged, or ended above where it started): the learning rate is far too high",
    "flat": "barely moves from where it started (see flat_loss)",
}
HIGH = 0.3  # a smooth curve still above this fraction of its start at the end creeps (the rate is too low)
STALLED = 0.15  # a bouncing second half that gains nothing, above this fraction of the start, is a plateau


def curve_shape(initial: float, losses: Sequence[float], diverged: bool) -> str | None:
    """Which of CURVES the training loss follows: `initial`, the loss before the first step; `losses`, each
    epoch's mean training loss. None where fewer than 5 epochs are too few to tell a shape. Measured: the drop by a
    quarter of the epochs as a share of the whole drop (a line: ~1/4; fast then slow: most of it); the
    second half: whether it bounces (rises between epochs a third of the time or more) and what it gains;
    its level relative to the start (HIGH, STALLED: set on the learning-rate experiment, MNIST and spirals)."""
    if diverged:
        return "far_too_high"
    curve = [x for x in (initial, *losses) if math.isfinite(x)]
    if len(losses) < 5 or len(curve) < 6 or not curve[0] > 0:
        return None
    start, end = curve[0], min(curve[-3:])
    if curve[-1] > start * 1.05:  # ended above where it started
        return "far_too_high"
    drop = start - end
    if drop < 0.02 * start:
        return "flat"
    quarter = curve[max(1, round((len(curve) - 1) / 4))]
    if (start - quarter) / drop < 0.45:
        return "too_low"
    tail = curve[len(curve) // 2 :]
    bounces = sum(b > a for a, b in zip(tail, tail[1:])) >= (len(tail) - 1) / 3
    gains = (tail[0] - min(tail[-3:])) / tail[0]
    if bounces and gains < 0.1 and sum(tail) / len(tail) > STALLED * start:
        return "too_high"
    if not bounces and end > HIGH * start:
        return "too_low"
    return "good"


def loss_curve(shape: str | None, step: int) -> Alarm | None:
    """The rate the loss curve's shape blames (too low, too high): far too high is the divergence alarm's, a
    flat curve flat_loss's."""
    if shape == "too_low":
        return _raise(
            "loss_curve", step, f"the training loss {CURVES[shape]}.", ("optimizer.lr*3",), ("optimizer.lr*10",)
        )
    if shape == "too_high":
        return _raise(
            "loss_curve",
            step,
            f"the training loss {CURVES[shape]}.",
            ("optimizer.lr*0.3",),
            ("optimizer.lr*0.1",),
            ("schedule=cosine",),
        )
    return None


def fit_gap(train: float, val: float, gap: float, underfit: float, step: int, what: str = "accuracy") -> Alarm | None:
    """A low training score (underfitting), or a train/validation gap (overfitting). The score is the
    accuracy, or R^2 for regression (`what`)."""
    if train < underfit:
        return _raise(
            "underfitting",
            step,
            f"underfitting: train {what} is only {train:.3f} (validation {val:.3f}): "
            "the model has too little capacity, too few epochs or too low a rate.",
            ("model.hidden*2",),
            ("trainer.epochs*2",),
            ("optimizer.lr*10",),
            also=(
                ". With outliers in the training targets (data.source.outliers), R² on them stays low "
                "however good the fit: compare r2/test, measured on clean targets"
                if what == "R²"
                else ""
            ),
        )
    if train - val > gap:
        return _raise(
            "overfitting",
            step,
            f"overfitting: train {what} {train:.3f} vs validation {val:.3f}: regularize, or "
            "use more data (data.augment for images).",
            ("model.dropout=0.3",),
            ("optimizer.weight_decay=0.0005",),
        )
    return None


def _worst_above(stats: dict[str, float], prefix: str, threshold: float) -> tuple[str, float] | None:
    """The layer with the highest `prefix` statistic, as (layer, value), when that value exceeds threshold."""
    values = [(k[len(prefix) :], v) for k, v in stats.items() if k.startswith(prefix)]
    worst = max(values, key=lambda kv: kv[1]) if values else None
    return worst if worst is not None and worst[1] > threshold else None
