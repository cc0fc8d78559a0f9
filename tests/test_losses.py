"""nn/losses.py: each loss's expected value at initialization (the alarm's reference), its prediction,
and its ensemble `combine`."""

from __future__ import annotations

import math

import pytest
import torch

from nnlab.nn.losses import BCE, MSE, CrossEntropy, Huber


@pytest.mark.parametrize(
    "loss, classes", [(CrossEntropy(), 10), (CrossEntropy(), 2), (BCE(), 2), (MSE(), 5), (Huber(), 5)]
)
def test_the_expected_initial_loss_is_the_loss_of_uninformative_outputs(loss, classes):
    y = torch.arange(400) % classes
    out = torch.zeros(400, loss.num_outputs(classes))  # no preference for any class
    assert loss(out, y).item() == pytest.approx(loss.expected_initial(classes), rel=1e-5)


def test_cross_entropy_combines_probabilities_not_logits():
    a, b = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    probs = CrossEntropy().combine([a, b]).softmax(1)
    assert torch.allclose(probs, (a.softmax(1) + b.softmax(1)) / 2, atol=1e-6)
    assert BCE().combine([torch.tensor([[2.0]]), torch.tensor([[-2.0]])]).sigmoid().item() == pytest.approx(0.5)


def test_softplus_output_predicts_positive_values_and_averages_them():
    loss = MSE(output="softplus")
    out = torch.tensor([[-3.0], [0.0], [5.0]])
    assert (loss.link(out) > 0).all()
    mean = loss.link(loss.combine([out, out + 1]))
    assert torch.allclose(mean, (loss.link(out) + loss.link(out + 1)) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="output must be one of linear, softplus"):
        MSE(output="relu")


def test_huber_is_quadratic_inside_delta_and_linear_beyond():
    h = Huber(delta=1.0)
    assert h(torch.tensor([[0.5]]), torch.tensor([[0.0]])).item() == pytest.approx(0.125)
    assert h(torch.tensor([[3.0]]), torch.tensor([[0.0]])).item() == pytest.approx(2.5)
    assert math.isclose(MSE()(torch.tensor([[3.0]]), torch.tensor([[0.0]])).item(), 9.0)
