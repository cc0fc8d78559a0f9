"""Fully connected network."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, get_args

from torch import nn

from nnlab.nn.dropout import Dropout

DropoutKind = Literal["auto", "standard", "alpha"]  # the choices of model.dropout_kind (validate reads them)


class MLP(nn.Module):
    """Flatten -> [Linear -> (BatchNorm) -> activation -> (Dropout)] per hidden width -> Linear head.

    `activation` is a factory called once per hidden layer, so a PReLU learns its own slope in each.
    `dropout_kind`: "standard" (zeros), "alpha" (AlphaDropout: keeps a SELU net's mean 0 and variance 1),
    or "auto": alpha for SELU, standard otherwise.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
        hidden: Sequence[int] = (64, 64),
        batch_norm: bool = False,
        dropout: float = 0.0,
        dropout_kind: DropoutKind = "auto",
    ):
        super().__init__()
        if dropout_kind not in get_args(DropoutKind):
            raise ValueError(f"dropout_kind must be one of {', '.join(get_args(DropoutKind))}, not {dropout_kind!r}")
        alpha = dropout_kind == "alpha" or (dropout_kind == "auto" and isinstance(activation(), nn.SELU))
        width = math.prod(in_shape)
        blocks = []
        for h in hidden:
            act = activation()
            pre = h * getattr(act, "pieces", 1)  # maxout needs k pre-activations per unit
            layers = [nn.Linear(width, pre)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(pre))
            layers.append(act)
            if dropout > 0:
                layers.append(Dropout(dropout, alpha=alpha))
            blocks.append(nn.Sequential(*layers))
            width = h
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x):
        return self.head(self.hidden(self.flatten(x)))
