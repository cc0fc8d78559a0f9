"""figures.py: what each figure shows (sizes, lines, pixels), and eval_mode, which every figure uses."""

from __future__ import annotations

import pytest
import torch
from matplotlib.image import imread
from torch import nn

from nnlab import figures
from nnlab.nn import eval_mode


def test_eval_mode_restores_the_mode_it_found_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    with eval_mode(model):
        assert not model.training and not model[1].training
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training  # left as it was: eval
    model.train()
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("boom")
    assert model.training


def test_a_runs_curves_and_a_reports_curves_are_the_same_figure(tmp_path):
    rows = [{"epoch": e, "loss/train": 1 / e, "acc/train": 1 - 1 / (e + 1), "loss/val": 1.2 / e, "acc/val": 0.5}
            for e in range(1, 6)]  # fmt: skip
    curves = [figures.epoch_curve(rows, split, "acc", split) for split in ("train", "val")]
    assert curves[0].epochs == (1, 2, 3, 4, 5) and curves[1].loss[0] == 1.2
    assert figures.epoch_curve(rows, "test", "acc", "test") is None
    figures.curves_figure(curves, tmp_path / "run.png")
    many = [figures.Curve(f"run{i}", (1, 2), (1.0, "nan"), (0.5, 0.6)) for i in range(5)]
    figures.curves_figure(many, tmp_path / "report.png", log_loss=True)
    assert imread(tmp_path / "run.png").shape[:2] == (320, 900)
    assert imread(tmp_path / "report.png").shape[:2] == (400, 1300)


def test_decision_boundary_colours_the_plane_by_the_prediction_and_keeps_the_mode():
    model = nn.Linear(2, 2)
    with torch.no_grad():  # class 1 right of x = 0
        model.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        model.bias.zero_()
    x = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    image = figures.decision_boundary(model, lambda out: out.argmax(1), x, torch.tensor([0, 1]), size=64)
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8 and model.training
    left, right = image[:, 32, 2].float(), image[:, 32, 61].float()
    tint = figures.palette() * 0.35 + 255 * 0.65
    assert torch.allclose(left, tint[0].round(), atol=1) and torch.allclose(right, tint[1].round(), atol=1)


def test_activations_figure_has_one_panel_per_layer():
    fig = figures.activations_figure({"layer1": torch.randn(32, 8), "layer2": torch.zeros(32, 8)})
    assert len(fig.axes) == 2 and fig.axes[1].get_title().startswith("layer2\nmean 0.000")
