"""The engine (nnlab/engine/) against torch's own optimizers, and torch.optim's mode as a named one.

A run alone trained through the engine (its optimizer's stacked form, a stack of one) and the same run
trained with torch.optim's own step() (the torch mode), every optimizer of conf/optimizer/ with a schedule,
gradient clipping, max-norm and weight decay, 200 steps on the same batches: every weight within 1e-5
relative. A run whose optimizer the engine has no stacked form for says so at its start and in its
summary.json (`update`), never switching silently."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import train
from nnlab.cli.command_line import compose, group_options
from nnlab.training.setup import setup
from nnlab.training.steps import train_step

STEPS = 200
SETTINGS = [
    "data.source.n_train=64",
    "data.source.n_test=32",
    "trainer.device=cpu",
    "trainer.batch_size=16",
    f"trainer.epochs={STEPS // 4}",  # 4 steps an epoch: the schedule spans the 200 steps
    "schedule=warmup_cosine",
    "optimizer.weight_decay=0.01",
    "regularization.clip_grad_norm=1.0",
    "regularization.max_norm=3.0",
]


@pytest.mark.parametrize("optimizer", group_options()["optimizer"])
def test_the_engine_computes_what_torchs_own_step_computes(optimizer):
    cfg = compose([*SETTINGS, f"optimizer={optimizer}"])
    engine, reference = setup(cfg), setup(cfg)
    assert engine.step is not None and engine.update == "engine"
    reference.step = None  # torch.optim's own step(), clip_grad_norm_ and renorm (engine/update.torch_update)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    draw = torch.Generator().manual_seed(0)
    x, y = engine.data.train.x, engine.data.train.y
    for _ in range(STEPS):
        idx = torch.randperm(len(x), generator=draw)[:16]
        train_step(engine, x[idx], y[idx], scaler)
        train_step(reference, x[idx], y[idx], scaler)
    assert engine.optimizer.param_groups[0]["lr"] == pytest.approx(reference.optimizer.param_groups[0]["lr"])
    ours, theirs = dict(engine.model.named_parameters()), dict(reference.model.named_parameters())
    for name, p in ours.items():
        # (float32 in another order: 1e-8..1e-7 a step; on some CPUs (AMD EPYC, 2026-12-06) NAdam's last steps
        # reach ~9e-6 on a few weights)
        torch.testing.assert_close(p, theirs[name], rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{optimizer} {n}: {m}")
    assert any(not torch.equal(p, q) for p, q in zip(ours.values(), setup(cfg).model.parameters()))  # it trained


def test_an_optimizer_without_a_stacked_form_is_a_named_mode(tmp_path):
    """`+optimizer.foreach=true` asks for torch's own implementation: the run trains with torch.optim's
    step(), says so in its start lines, and its summary.json records the mode and why."""
    run, out = train(tmp_path, "trainer.epochs=1", "+optimizer.foreach=true")
    said = out.stdout + (run / "train.log").read_text()
    assert "update: torch.optim's own step() (optimizer.foreach is on" in said
    summary = json.loads((run / "summary.json").read_text())
    assert summary["update"].startswith("torch.optim (optimizer.foreach is on")
    engine, _ = train(tmp_path, "trainer.epochs=1", run_dir="engine")
    assert json.loads((engine / "summary.json").read_text())["update"] == "engine"
    assert "torch.optim's own step()" not in (engine / "train.log").read_text()
