"""The initializers produce the statistics they promise."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nnlab.nn import init
from nnlab.nn.mlp import MLP

FAN_IN = 400


def big_layer(fan_in=FAN_IN, fan_out=300):
    """A hidden layer (followed by a small output layer, which gets the linear gain)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(fan_in, fan_out), nn.Linear(fan_out, 2))


def std(model):
    return model[0].weight.std().item()


def test_he_normal_std_is_sqrt_2_over_fan_in():
    m = init.he_normal(big_layer(), nn.ReLU)
    assert std(m) == pytest.approx(math.sqrt(2 / FAN_IN), rel=0.03)


def test_he_takes_the_leaky_slope_from_the_activation():
    m = init.he_normal(big_layer(), lambda: nn.LeakyReLU(0.2))
    assert std(m) == pytest.approx(math.sqrt(2 / (1 + 0.2**2) / FAN_IN), rel=0.03)


def test_he_uniform_bounds():
    m = init.he_uniform(big_layer(), nn.ReLU)
    bound = math.sqrt(6 / FAN_IN)
    assert m[0].weight.abs().max().item() <= bound and m[0].weight.abs().max().item() > 0.95 * bound


def test_xavier_uses_the_activation_gain():
    fan = FAN_IN + 300
    assert std(init.xavier_normal(big_layer(), nn.Tanh)) == pytest.approx(5 / 3 * math.sqrt(2 / fan), rel=0.03)
    assert std(init.xavier_uniform(big_layer(), nn.Sigmoid)) == pytest.approx(math.sqrt(2 / fan), rel=0.03)


def test_lecun_normal_and_the_fixed_normals():
    assert std(init.lecun_normal(big_layer(), nn.SELU)) == pytest.approx(math.sqrt(1 / FAN_IN), rel=0.03)
    assert std(init.normal_small(big_layer())) == pytest.approx(0.01, rel=0.03)
    assert std(init.normal_large(big_layer())) == pytest.approx(1.0, rel=0.03)


def test_zeros_is_all_zero_and_bias_is_set():
    m = init.zeros(big_layer(), bias=0.0)
    assert torch.count_nonzero(m[0].weight) == 0 and torch.count_nonzero(m[0].bias) == 0
    m = init.he_normal(big_layer(), nn.ReLU, bias=0.01)
    assert torch.all(m[0].bias == 0.01)


def test_orthogonal_rows_are_orthonormal_times_gain():
    m = init.orthogonal(big_layer(fan_in=300, fan_out=200), nn.ReLU)
    w = m[0].weight
    assert torch.allclose(w @ w.T, 2 * torch.eye(200), atol=1e-4)  # gain sqrt(2) for ReLU


def test_pytorch_default_leaves_weights_and_bias_untouched():
    a, b = big_layer(), big_layer()
    init.pytorch_default(b)
    assert torch.equal(a[0].weight, b[0].weight) and torch.equal(a[0].bias, b[0].bias)


def test_the_output_layer_gets_the_linear_gain():
    m = init.he_normal(big_layer(), nn.ReLU)
    assert m[1].weight.std().item() == pytest.approx(math.sqrt(1 / 300), rel=0.1)
    m = init.xavier_normal(big_layer(), nn.Tanh)
    assert m[1].weight.std().item() == pytest.approx(math.sqrt(2 / 302), rel=0.1)


def test_init_reaches_every_layer_including_conv_and_head():
    model = MLP((1, 4, 4), 3, nn.ReLU, hidden=[8, 8])
    init.zeros(model)
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters())
