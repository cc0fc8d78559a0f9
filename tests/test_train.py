"""train.py: the step, evaluation and early stopping as units (the loop end to end: test_cli, test_resume)."""

from __future__ import annotations

import math

import torch

from nnlab.cli.command_line import compose
from nnlab.config.schema import EarlyStoppingConfig
from nnlab.engine.update import global_grad_norm
from nnlab.training.loop_state import Monitor
from nnlab.training.setup import setup
from nnlab.training.steps import evaluate, train_step

TOY = ["data.source.n_train=64", "data.source.n_test=32", "trainer.device=cpu"]


def test_the_fast_gradient_norm_equals_torchs():
    """The loop's global gradient norm (no clipping pass) is clip_grad_norm_'s total norm."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    model(torch.randn(4, 5)).square().sum().backward()
    params = list(model.parameters())
    ours = global_grad_norm(params)
    assert torch.allclose(ours, torch.nn.utils.clip_grad_norm_(params, float("inf")), rtol=1e-6)
    assert global_grad_norm([torch.nn.Parameter(torch.zeros(2))]).item() == 0  # no gradients yet


def test_a_step_lowers_the_loss_of_its_batch_and_evaluate_keeps_the_mode():
    exp = setup(compose([*TOY, "optimizer=sgd", "optimizer.lr=0.1", "model.dropout=0.5"]))
    x, y = exp.data.train.x, exp.data.train.y
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = evaluate(exp, exp.data.train)
    assert exp.model.training  # evaluate ran in eval mode and gave the mode back
    for _ in range(20):
        _, loss, norm = train_step(exp, x, y, scaler)
    assert evaluate(exp, exp.data.train)["loss"] < before["loss"] and norm.item() > 0
    exp.model.eval()
    evaluate(exp, exp.data.train)
    assert not exp.model.training


def test_monitor_keeps_the_best_and_stops_after_patience():
    m = Monitor(EarlyStoppingConfig(metric="acc/val", patience=2, min_delta=0.01))
    assert m.update(1, {"acc/val": 0.5}) and m.update(2, {"acc/val": 0.6})
    assert not m.update(3, {"acc/val": 0.605}) and not m.should_stop  # below min_delta: not better
    assert not m.update(4, {"acc/val": 0.55}) and m.should_stop and m.best_epoch == 2
    loss = Monitor(EarlyStoppingConfig(metric="loss/val", patience=None, min_delta=0.0))
    assert loss.update(1, {"loss/val": 1.0}) and not loss.update(2, {"loss/val": math.inf}) and not loss.should_stop
