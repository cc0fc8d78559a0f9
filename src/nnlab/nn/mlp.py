"""Fully connected network."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, get_args

from torch import nn

from nnlab.nn.dropout import Dropout

DropoutKind = Literal["auto", "standard", "alpha"]  # the choices of model.dropout_kind (validate reads them)


class MLP(nn.Module):
    """Flatten -> (Dropout on the inputs) -> [Linear -> (BatchNorm) -> activation -> (Dropout)] per hidden
    width -> Linear head.

    `activation` is a factory called once per hidden layer, so a PReLU learns its own slope in each.
    `dropout`: one rate for every hidden layer, or one per hidden layer (the notes' ~0.5 on hidden layers);
    `input_dropout`: a rate on the inputs (the notes' ~0.2). `residual`: an identity skip around every hidden
    layer whose width equals its input's, h + layer(h) (a residual MLP, note 003). `dropout_kind`: "standard" (zeros), "alpha"
    (AlphaDropout: keeps a SELU net's mean 0 and variance 1), or "auto": alpha for SELU, standard otherwise.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
        hidden: Sequence[int] = (64, 64),
        batch_norm: bool = False,
        dropout: float | Sequence[float] = 0.0,
        dropout_kind: DropoutKind = "auto",
        input_dropout: float = 0.0,
        residual: bool = False,
    ):
        super().__init__()
        if dropout_kind not in get_args(DropoutKind):
            raise ValueError(f"dropout_kind must be one of {', '.join(get_args(DropoutKind))}, not {dropout_kind!r}")
        alpha = dropout_kind == "alpha" or (dropout_kind == "auto" and isinstance(activation(), nn.SELU))
        rates = [float(r) for r in dropout] if isinstance(dropout, Sequence) else [float(dropout)] * len(hidden)
        if len(rates) != len(hidden):
            raise ValueError(f"dropout lists {len(rates)} rates for {len(hidden)} hidden layers: one each")
        width = math.prod(in_shape)
        blocks = []
        for h, rate in zip(hidden, rates):
            act = activation()
            pre = h * getattr(act, "pieces", 1)  # maxout needs k pre-activations per unit
            layers = [nn.Linear(width, pre)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(pre))
            layers.append(act)
            if rate > 0:
                layers.append(Dropout(rate, alpha=alpha))
            blocks.append(nn.Sequential(*layers))
            width = h
        self.flatten = nn.Flatten()
        widths = [math.prod(in_shape), *hidden]
        self.skips = [residual and a == b for a, b in zip(widths, widths[1:])]  # which blocks add their input
        self.input_drop = Dropout(input_dropout, alpha=alpha) if input_dropout > 0 else None
        self.hidden = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_outputs)

    def add_hidden_noise(self, std: float) -> None:
        """Gaussian noise of standard deviation `std` on every hidden layer's output while training (after its
        dropout, drawn from the same generator: regularization.hidden_noise)."""
        for block in self.hidden:
            last = block[-1]
            if isinstance(last, Dropout):
                last.noise = std
            else:
                block.append(Dropout(0.0, noise=std))

    def forward(self, x):
        h = self.flatten(x)
        h = h if self.input_drop is None else self.input_drop(h)
        for block, skip in zip(self.hidden, self.skips):
            h = h + block(h) if skip else block(h)
        return self.head(h)
