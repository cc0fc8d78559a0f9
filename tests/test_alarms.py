"""The alarms are pure functions: each fires on what it measures and stays quiet otherwise."""

from __future__ import annotations

import math

import pytest
import torch

from nnlab.training import alarms


def test_initial_loss():
    assert alarms.initial_loss(0.70, math.log(2), 0.5) is None
    a = alarms.initial_loss(3.6, math.log(2), 0.5)
    assert a.name == "initial_loss" and "init=" in a.message
    assert alarms.initial_loss(float("nan"), math.log(2), 0.5) is not None


def test_divergence():
    assert alarms.divergence(2.0, 0.7, 3.0, 10) is None
    assert alarms.divergence(2.2, 0.7, 3.0, 10).name == "divergence"
    assert "not a number" in alarms.divergence(float("inf"), 0.7, 3.0, 10).message


def test_flat_loss():
    assert alarms.flat_loss(0.69, 0.40, 0.05, 200) is None
    assert alarms.flat_loss(0.69, 0.68, 0.05, 200).name == "flat_loss"


def test_gradient_flow():
    assert alarms.gradient_flow(0.5, 0.01, 100, 5) is None
    assert alarms.gradient_flow(None, 0.01, 100, 5) is None
    assert alarms.gradient_flow(1e-4, 0.01, 100, 5).name == "vanishing_gradients"
    assert alarms.gradient_flow(1e4, 0.01, 100, 5).name == "exploding_gradients"


def test_dead_units_and_saturation_name_the_worst_layer():
    stats = {"stats/dead_frac/layer1": 0.1, "stats/dead_frac/layer2": 0.8, "stats/saturated_frac/layer1": 0.1}
    a = alarms.dead_units(stats, 0.5, 7)
    assert a.name == "dead_units" and "layer2" in a.message and "80%" in a.message
    assert alarms.saturation(stats, 0.25, 7) is None
    assert alarms.saturation({"stats/saturated_frac/layer3": 0.6}, 0.25, 7).name == "saturation"
    assert alarms.dead_units({}, 0.5, 7) is None


def test_update_ratio_uses_the_typical_layer():
    assert (
        alarms.update_ratio({"stats/update_ratio/layer1": 1e-3, "stats/update_ratio/layer2": 3e-3}, 1e-5, 0.1, 1)
        is None
    )
    assert "too low" in alarms.update_ratio({"stats/update_ratio/layer1": 1e-7}, 1e-5, 0.1, 1).message
    assert "too high" in alarms.update_ratio({"stats/update_ratio/layer1": 0.5}, 1e-5, 0.1, 1).message


def test_fit_gap():
    assert alarms.fit_gap(0.99, 0.97, 0.1, 0.75, 1) is None
    assert alarms.fit_gap(1.0, 0.8, 0.1, 0.75, 1).name == "overfitting"
    assert alarms.fit_gap(0.55, 0.52, 0.1, 0.75, 1).name == "underfitting"


def test_flat_loss_and_dead_units_blame_first_what_the_start_measured():
    """An alarm's first advice is the fix its measured cause needs (the doctor's tables: zeros init -> init
    first), and no alarm names a setting the run does not have."""
    for start in ("symmetric", "silent"):
        flat = alarms.flat_loss(0.69, 0.69, 0.05, 200, start)
        dead = alarms.dead_units({"stats/dead_frac/layer1": 1.0}, 0.5, 50, start)
        assert flat.fixes[0] == dead.fixes[0] == ("init=he_normal",)
        assert "learning rate" not in flat.message and "init=zeros" not in flat.message + dead.message
    plain = alarms.flat_loss(0.69, 0.69, 0.05, 200)
    assert plain.fixes[0] == ("optimizer.lr*10",) and "init=" not in plain.message.split("Try")[0]
    assert alarms.dead_units({"stats/dead_frac/layer1": 1.0}, 0.5, 50).fixes[0] == ("optimizer.lr*0.1",)


def test_the_start_is_measured_from_the_weights_and_the_probe():
    from torch import nn

    from nnlab.training.diagnostics import start_form

    torch.manual_seed(0)
    layers = [("layer1", nn.Linear(2, 16)), ("layer2", nn.Linear(16, 16)), ("out", nn.Linear(16, 2))]
    probe = {"layer1": torch.randn(64, 16), "layer2": torch.randn(64, 16)}
    assert start_form(layers, probe) == ""
    assert start_form(layers, {**probe, "layer2": 1e-5 * torch.randn(64, 16)}) == "silent"
    nn.init.zeros_(layers[1][1].weight)
    assert start_form(layers, probe) == "symmetric"


# Measured epoch losses (loss before the first step, then each epoch's): SGD on moons at five rates (the
# learning-rate experiment), Adam at 0.03 on 5,000 MNIST digits
CURVES = {
    "too_low": [
        (0.697, [0.709, 0.691, 0.674, 0.659, 0.644, 0.63, 0.617, 0.604, 0.593, 0.582, 0.572, 0.562, 0.553, 0.544]),
        (0.697, [0.643, 0.535, 0.475, 0.439, 0.414, 0.396, 0.382, 0.37, 0.361, 0.353, 0.346, 0.34, 0.334, 0.33]),
    ],
    "good": [
        (0.697, [0.311, 0.262, 0.246, 0.233, 0.224, 0.21, 0.199, 0.188, 0.175, 0.163, 0.146, 0.14, 0.126, 0.12]),
        (0.697, [0.576, 0.199, 0.147, 0.154, 0.11, 0.112, 0.128, 0.087, 0.07, 0.091, 0.073, 0.078, 0.075, 0.077]),
        (3.02, [0.713, 0.28, 0.186, 0.135, 0.095, 0.065, 0.052, 0.029]),
    ],
    "too_high": [(3.02, [1.065, 0.596, 0.541, 0.466, 0.507, 0.448, 0.528, 0.46])],
    "far_too_high": [(0.697, [0.6, 0.7, 0.9, 1.2, 1.1])],
    "flat": [(0.693, [0.693, 0.6931, 0.6929, 0.693, 0.6931])],
    None: [(0.697, [0.3, 0.2, 0.15, 0.1])],  # four epochs: no shape yet
}


@pytest.mark.parametrize("shape", list(CURVES))
def test_the_loss_curve_is_named_as_note_001_draws_it(shape):
    for initial, losses in CURVES[shape]:
        assert alarms.curve_shape(initial, losses, diverged=False) == shape, losses
    assert alarms.curve_shape(0.697, [0.3, 0.2, 0.1], diverged=True) == "far_too_high"
    alarm = alarms.loss_curve(shape, 100)
    if shape in ("too_low", "too_high"):
        assert alarm.name == "loss_curve" and alarms.CURVES[shape] in alarm.message
        assert alarm.fixes[0] == (("optimizer.lr*3",) if shape == "too_low" else ("optimizer.lr*0.3",))
    else:
        assert alarm is None
