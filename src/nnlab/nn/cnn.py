"""A small configurable convolutional network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
from torch import nn

from nnlab.nn.dropout import Dropout

Pool = Literal["max", "avg", "none"]  # the choices of model.pool and model.padding (validate reads them)
Padding = Literal["same", "valid"]


class CNN(nn.Module):
    """[Conv(k) -> (BatchNorm) -> activation] per channel entry, a 2x2 pool after every `pool_every`
    of them, then Flatten -> Dropout -> [Linear -> activation -> Dropout] per hidden width -> Linear head.
    `padding`: "same" keeps the image size through a convolution, "valid" shrinks it by k - 1. `dropout`:
    the rate after the convolutions; `dense_dropout`: after each dense layer (None: the same; Keras's
    mnist_cnn has 0.25 and 0.5)."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_outputs: int,
        activation: Callable[[], nn.Module] = nn.ReLU,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        pool: Pool = "max",
        pool_every: int = 1,
        padding: Padding = "same",
        batch_norm: bool = False,
        dropout: float = 0.25,
        hidden: Sequence[int] = (128,),
        dense_dropout: float | None = None,
    ):
        super().__init__()
        for name, value, kind in (("pool", pool, Pool), ("padding", padding, Padding)):
            if value not in get_args(kind):
                raise ValueError(f"{name} must be one of {', '.join(get_args(kind))}, not {value!r}")
        c_in = in_shape[0]
        blocks = []
        for i, c in enumerate(channels, 1):
            act = activation()
            pre = c * getattr(act, "pieces", 1)
            layers = [nn.Conv2d(c_in, pre, kernel_size, padding=kernel_size // 2 if padding == "same" else 0)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(pre))
            layers.append(act)
            if pool != "none" and (i % pool_every == 0 or i == len(channels)):
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
            blocks.append(nn.Sequential(*layers))
            c_in = c
        self.features = nn.Sequential(*blocks)
        with torch.no_grad():  # the flattened size for this input shape
            width = self.features(torch.zeros(1, *in_shape)).numel()
        dense, rate = [nn.Flatten()], dropout
        for h in hidden:
            act = activation()
            pre = h * getattr(act, "pieces", 1)
            dense += [Dropout(rate)] if rate > 0 else []
            dense += [nn.Linear(width, pre), act]
            width, rate = h, dropout if dense_dropout is None else dense_dropout
        dense += [Dropout(rate)] if rate > 0 else []
        self.hidden = nn.Sequential(*dense)
        self.head = nn.Linear(width, num_outputs)

    def forward(self, x):
        return self.head(self.hidden(self.features(x)))
