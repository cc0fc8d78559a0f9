"""Weight initializers. Each is `scheme(model, activation, bias)`: it initializes every Linear and Conv
layer of `model`, taking gain or nonlinearity from the activation (a module, or the factory that makes one)
for the hidden layers, and the linear gain for the output layer.

`bias` is the value every bias is set to (0.01 keeps ReLU units alive at the start); for
pytorch_default, bias=None leaves torch's own bias init alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def nonlinearity(activation) -> tuple[str, float | None]:
    """The torch.nn.init name (and parameter) that matches an activation, for gains."""
    act = activation if isinstance(activation, nn.Module) else activation()
    name = type(act).__name__
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", act.negative_slope
    if isinstance(act, nn.PReLU):
        return "leaky_relu", float(act.weight.detach().flatten()[0])
    return {
        "Sigmoid": ("sigmoid", None),
        "Tanh": ("tanh", None),
        "SELU": ("selu", None),
        "Identity": ("linear", None),
    }.get(name, ("relu", None))  # ReLU and its smooth cousins (ELU, GELU, SiLU, Softplus, Maxout)


def activation_gain(activation) -> float:
    name, param = nonlinearity(activation)
    if name == "selu":  # self-normalizing nets need Var(w) = 1/fan_in (torch's own advice), so gain 1, not torch's 3/4
        return 1.0
    return nn.init.calculate_gain(name, param)


def _apply(model: nn.Module, scheme: Callable, activation, bias: float | None) -> nn.Module:
    """scheme(weight, activation) on every layer. The output layer is followed by no activation, so it
    gets the linear gain: its logits start small and the initial loss near chance (ln C)."""
    layers = [m for m in model.modules() if isinstance(m, LAYERS)]
    with torch.no_grad():
        for i, m in enumerate(layers):
            scheme(m.weight, activation if i < len(layers) - 1 else nn.Identity)
            if m.bias is not None and bias is not None:
                m.bias.fill_(bias)
    return model


def pytorch_default(model, activation=None, bias: float | None = None):
    return _apply(model, lambda w, act: None, activation, bias)


def zeros(model, activation=None, bias: float | None = 0.0):
    return _apply(model, lambda w, act: nn.init.zeros_(w), activation, bias)


def normal_small(model, activation=None, bias: float | None = 0.0, std: float = 0.01):
    return _apply(model, lambda w, act: nn.init.normal_(w, 0.0, std), activation, bias)


def normal_large(model, activation=None, bias: float | None = 0.0, std: float = 1.0):
    return _apply(model, lambda w, act: nn.init.normal_(w, 0.0, std), activation, bias)


def xavier_uniform(model, activation=nn.ReLU, bias: float | None = 0.0, gain: float | None = None):
    """Glorot uniform with the activation's gain (`gain`: one gain for every layer; 1.0 is Keras's glorot_uniform)."""
    return _apply(model, lambda w, act: nn.init.xavier_uniform_(w, _gain(gain, act)), activation, bias)


def xavier_normal(model, activation=nn.ReLU, bias: float | None = 0.0, gain: float | None = None):
    return _apply(model, lambda w, act: nn.init.xavier_normal_(w, _gain(gain, act)), activation, bias)


def _gain(fixed: float | None, act) -> float:
    return activation_gain(act) if fixed is None else fixed


def _kaiming(fn):
    def scheme(w, act):
        name, param = nonlinearity(act)
        fn(w, a=param or 0, mode="fan_in", nonlinearity=name)

    return scheme


def he_normal(model, activation=nn.ReLU, bias: float | None = 0.0):
    return _apply(model, _kaiming(nn.init.kaiming_normal_), activation, bias)


def he_uniform(model, activation=nn.ReLU, bias: float | None = 0.0):
    return _apply(model, _kaiming(nn.init.kaiming_uniform_), activation, bias)


def _lecun(w, act):
    fan_in = nn.init._calculate_fan_in_and_fan_out(w)[0]
    nn.init.normal_(w, 0.0, 1 / math.sqrt(fan_in))


def lecun_normal(model, activation=None, bias: float | None = 0.0):
    return _apply(model, _lecun, activation, bias)


def orthogonal(model, activation=nn.ReLU, bias: float | None = 0.0):
    return _apply(model, lambda w, act: nn.init.orthogonal_(w, activation_gain(act)), activation, bias)
