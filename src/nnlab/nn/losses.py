"""Losses. Each takes (model output, targets), and says how many outputs the model needs, how to read a
prediction, what the loss should be at initialization, and how to average several models' outputs into
one (an ensemble: the mean of their probabilities, as an output again).

Targets are integer labels (classification) for all of them; `mse` and `huber` also take float targets
of the output's shape (regression), through an output link: `linear` (the output as it is) or `softplus`
(always positive: for positive targets such as prices, counts or durations)."""

from __future__ import annotations

import math
from typing import Literal

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

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        """[N, C] class probabilities: the softmax of the logits."""
        return out.float().softmax(1)

    def expected_initial(self, num_classes: int) -> float:
        return math.log(num_classes)

    def combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """Log of the mean softmax probabilities: logits of the averaged prediction."""
        probs = torch.stack([o.float().softmax(1) for o in outputs]).mean(0)
        return probs.clamp_min(1e-12).log()


ONE_THREAD_BELOW = 32768  # torch's CPU grain size: a reduction over fewer elements runs on one thread


def stacked_cross_entropy(out: torch.Tensor, y: torch.Tensor, smoothing: list[float]) -> torch.Tensor | None:
    """The cross-entropy of K members' batches in one computation: logits [K, B, C], labels [K, B], each
    member's label smoothing -> the [K] mean losses (torch's formula: (1 - e) * nll + e * the mean over
    the classes of -log p). Each row is its member's own whatever K: a run alone computes it as a stack of
    one, so a member equals its run alone bit for bit. None where a row's mean could split across threads
    (B >= ONE_THREAD_BELOW: then K and 1 rows would sum in another order) or the labels are not classes:
    the caller takes each member's own loss."""
    if y.is_floating_point() or y.shape[1] >= ONE_THREAD_BELOW:
        return None
    logp = torch.log_softmax(out, dim=-1)
    nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    if any(e > 0 for e in smoothing):
        e = torch.tensor(smoothing, dtype=nll.dtype, device=nll.device).unsqueeze(1)
        nll = torch.where(e > 0, (1 - e) * nll - e * logp.mean(-1), nll)
    return nll.mean(1)


class BCE(nn.Module):
    """Sigmoid + binary cross-entropy on a single logit (two classes)."""

    def forward(self, out, y):
        return F.binary_cross_entropy_with_logits(out.squeeze(1), y.to(out.dtype))

    def num_outputs(self, num_classes: int) -> int:
        return 1

    def predict(self, out):
        return (out.squeeze(1) > 0).long()

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        """[N, 2]: the probabilities of class 0 and class 1 (the sigmoid of the one logit)."""
        p = out.float().sigmoid().reshape(-1, 1)
        return torch.cat([1 - p, p], 1)

    def expected_initial(self, num_classes: int) -> float:
        return math.log(2)

    def combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The logit of the mean sigmoid probability."""
        p = torch.stack([o.float().sigmoid() for o in outputs]).mean(0).clamp(1e-7, 1 - 1e-7)
        return p.log() - (1 - p).log()


LINKS = {"linear": lambda out: out, "softplus": F.softplus}
Link = Literal["linear", "softplus"]  # the choices of loss.output: the keys of LINKS (validate reads them)


class MSE(nn.Module):
    """Mean squared error: between the outputs and float targets (regression), or between C linear outputs
    and one-hot targets (classification)."""

    regression = True  # may take float targets

    def __init__(self, output: Link = "linear"):
        super().__init__()
        if output not in LINKS:
            raise ValueError(f"output must be one of {', '.join(LINKS)}, not {output!r}")
        self.output = output
        self.shift: torch.Tensor | float = 0.0  # the targets' scaling (data.target_scaling): trained on
        self.scale: torch.Tensor | float = 1.0  # (y - shift) / scale, predicted back in the targets' units

    def scale_targets(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """Train on (y - shift) / scale; link() answers in the targets' own units (metrics, predictions)."""
        self.shift, self.scale = shift, scale

    def link(self, out: torch.Tensor) -> torch.Tensor:
        """The prediction of a regression target from the model's output, in the target's own units."""
        return LINKS[self.output](out) * self.scale + self.shift

    def target(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """What the output (through its link) is trained towards: a float target as scaled, one-hot classes."""
        if y.is_floating_point():
            return ((y - self.shift) / self.scale).to(out.dtype)
        return F.one_hot(y, out.shape[1]).to(out.dtype)

    def forward(self, out, y):
        return F.mse_loss(LINKS[self.output](out), self.target(out, y))

    def num_outputs(self, num_classes: int) -> int:
        return num_classes  # regression: the number of targets

    def predict(self, out):
        return out.argmax(1)

    def probabilities(self, out: torch.Tensor) -> torch.Tensor:
        """[N, C]: squared error on one-hot targets estimates each class's probability, so the outputs
        (through the link), clipped to [0, 1] and normalized to sum to one."""
        p = self.link(out.float()).clamp(0, 1)
        return p / p.sum(1, keepdim=True).clamp_min(1e-12)

    def expected_initial(self, num_classes: int) -> float:
        return 1 / num_classes  # outputs near 0: (1 - 0)^2 for one of C outputs

    def combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The mean of the predictions, as an output again (softplus: through its inverse)."""
        mean = (torch.stack([self.link(o.float()) for o in outputs]).mean(0) - self.shift) / self.scale
        return mean if self.output == "linear" else mean.expm1().clamp_min(1e-12).log()


class Huber(MSE):
    """Huber loss: quadratic within `delta` of the target, linear beyond (robust to outliers)."""

    def __init__(self, delta: float = 1.0, output: Link = "linear"):
        super().__init__(output)
        self.delta = delta

    def forward(self, out, y):
        return F.huber_loss(LINKS[self.output](out), self.target(out, y), delta=self.delta)

    def expected_initial(self, num_classes: int) -> float:
        return 0.5 / num_classes
