"""Losses for classification. Each takes (model output, integer labels), and says how many outputs the
model needs, how to read a prediction, what the loss should be at initialization, and how to average
several models' outputs into one (an ensemble: the mean of their probabilities, as an output again)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropy(nn.CrossEntropyLoss):
    """Softmax + cross-entropy over C outputs."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__(label_smoothing=label_smoothing)

    def num_outputs(self, num_classes: int) -> int:
        return num_classes

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(1)

    def expected_initial(self, num_classes: int) -> float:
        return math.log(num_classes)

    def combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """Log of the mean softmax probabilities: logits of the averaged prediction."""
        probs = torch.stack([o.float().softmax(1) for o in outputs]).mean(0)
        return probs.clamp_min(1e-12).log()


class BCE(nn.Module):
    """Sigmoid + binary cross-entropy on a single logit (two classes)."""

    def forward(self, out, y):
        return F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(out.dtype))

    def num_outputs(self, num_classes: int) -> int:
        return 1

    def predict(self, out):
        return (out.squeeze(1) > 0).long()

    def expected_initial(self, num_classes: int) -> float:
        return math.log(2)

    def combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The logit of the mean sigmoid probability."""
        p = torch.stack([o.float().sigmoid() for o in outputs]).mean(0).clamp(1e-7, 1 - 1e-7)
        return p.log() - (1 - p).log()


class MSE(nn.Module):
    """Mean squared error between C linear outputs and one-hot targets."""

    def forward(self, out, y):
        return F.mse_loss(out, F.one_hot(y, out.shape[1]).to(out.dtype))

    def num_outputs(self, num_classes: int) -> int:
        return num_classes

    def predict(self, out):
        return out.argmax(1)

    def expected_initial(self, num_classes: int) -> float:
        return 1 / num_classes  # outputs near 0: (1 - 0)^2 for one of C outputs

    def combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([o.float() for o in outputs]).mean(0)


class Huber(MSE):
    """Huber loss on one-hot targets: quadratic within `delta`, linear beyond."""

    def __init__(self, delta: float = 1.0):
        super().__init__()
        self.delta = delta

    def forward(self, out, y):
        return F.huber_loss(out, F.one_hot(y, out.shape[1]).to(out.dtype), delta=self.delta)

    def expected_initial(self, num_classes: int) -> float:
        return 0.5 / num_classes
