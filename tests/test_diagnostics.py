"""Each diagnostic reacts to what it measures: honest experiments on tiny data, through the real CLI,
plus the statistics as pure functions."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from conftest import events, metrics, nnlab, summary, train
from nnlab.commands.lr_find import steepest_descent
from nnlab.training import diagnostics

FAST = ["data.source.n_train=400", "data.source.n_test=100", "trainer.progress=false", "diagnostics.every=10"]


def alarm_names(run):
    return [a["name"] for a in summary(run)["alarms"]]


def layer_stat(run, key):
    return [r[key] for r in metrics(run) if key in r]


def test_zero_init_keeps_units_identical_and_the_loss_flat(tmp_path):
    run, out = train(
        tmp_path, *FAST, "activation=sigmoid", "init=zeros", "trainer.epochs=20", "optimizer=sgd", "optimizer.lr=0.1"
    )
    w1 = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]["hidden.0.0.weight"]
    assert w1.abs().sum() > 0 and torch.allclose(w1, w1[0].expand_as(w1))  # moved, but every unit the same
    assert "flat_loss" in alarm_names(run) and "[flat_loss]" in out.stdout
    assert summary(run)["metrics"]["acc/test"] < 0.7  # about a coin flip
    assert "**flat_loss**" in "".join(
        t.tensor_proto.string_val[0].decode() for t in events(run).Tensors("alarms/text_summary")
    )


def test_deep_sigmoid_gradients_vanish_where_relu_he_ones_do_not(tmp_path):
    deep = ["model.hidden=[32,32,32,32,32,32]", "trainer.epochs=2", "optimizer=sgd"]
    sig, _ = train(tmp_path, *FAST, *deep, "activation=sigmoid", "init=xavier_normal", run_dir="sigmoid")
    relu, _ = train(tmp_path, *FAST, *deep, "activation=relu", "init=he_normal", run_dir="relu")
    sig_ratio, relu_ratio = (
        layer_stat(sig, "stats/grad_ratio/first_to_last"),
        layer_stat(relu, "stats/grad_ratio/first_to_last"),
    )
    assert max(sig_ratio) < 0.01 < 0.1 < min(relu_ratio)
    assert layer_stat(sig, "stats/grad_norm/layer1")[0] < 0.01 * layer_stat(relu, "stats/grad_norm/layer1")[0]
    assert "vanishing_gradients" in alarm_names(sig) and "vanishing_gradients" not in alarm_names(relu)


def test_an_absurd_learning_rate_stops_the_run_as_diverged(tmp_path):
    run, out = train(tmp_path, *FAST, "optimizer=sgd", "optimizer.lr=50", "trainer.epochs=5", "trainer.log_every=5")
    s = summary(run)
    assert s["status"] == "diverged" and s["epochs_run"] == 1 and s["steps"] == 5
    assert "divergence" in alarm_names(run) and "diverged" in out.stdout
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # the last good one: before step 1
    assert state["step"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert (run / "metrics.jsonl").exists() and "step/loss" in events(run).Tags()["scalars"]


def test_a_large_negative_bias_kills_relu_units(tmp_path):
    run, _ = train(tmp_path, *FAST, "init.bias=-3", "trainer.epochs=2")
    assert max(layer_stat(run, "stats/dead_frac/layer2")) > 0.9
    assert "dead_units" in alarm_names(run)
    assert layer_stat(run, "stats/no_grad_frac/layer2") == layer_stat(run, "stats/dead_frac/layer2")  # ReLU: same units
    healthy, _ = train(tmp_path, *FAST, "init.bias=0.01", "trainer.epochs=2", run_dir="healthy")
    assert max(layer_stat(healthy, "stats/dead_frac/layer2")) < 0.5 and "dead_units" not in alarm_names(healthy)


@pytest.mark.parametrize("activation", ["leaky_relu", "elu"])
def test_leaky_and_elu_units_below_zero_still_pass_a_gradient(tmp_path, activation):
    """Note 001's "leaky ReLU will not die": the same negative bias puts every unit below zero (dead_frac),
    yet none passes no gradient (no_grad_frac) and no dead_units alarm is raised."""
    run, _ = train(tmp_path, *FAST, "init.bias=-3", "trainer.epochs=2", f"activation={activation}")
    assert max(layer_stat(run, "stats/dead_frac/layer2")) > 0.9
    assert max(layer_stat(run, "stats/no_grad_frac/layer2")) == 0.0 and "dead_units" not in alarm_names(run)


def test_large_init_saturates_sigmoids_and_misses_the_initial_loss(tmp_path):
    run, _ = train(
        tmp_path, *FAST, "activation=sigmoid", "init=normal_large", "model.hidden=[64,64,64]", "trainer.epochs=1"
    )
    assert {"saturation", "initial_loss"} <= set(alarm_names(run))
    assert summary(run)["initial_loss"] > 1.5 * math.log(2)


def test_overfitting_is_named(tmp_path):
    run, _ = train(
        tmp_path,
        "data=spirals",
        "data.source.noise=0.4",
        "data.subset=40",
        "model.hidden=[256,256]",
        "optimizer.lr=0.01",
        "trainer.epochs=100",
        "trainer.progress=false",
    )
    m = summary(run)["metrics"]
    assert m["acc/train"] == 1.0 and m["acc/val"] < 0.9 and "overfitting" in alarm_names(run)


def test_check_passes_on_a_sane_config_and_fails_step_3_on_a_tiny_model(tmp_path):
    ok = nnlab("check", f"hydra.run.dir={tmp_path / 'ok'}", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads((tmp_path / "ok" / "check.json").read_text())
    assert report["passed"] and [s["step"] for s in report["steps"]] == [1, 2, 3, 4]
    small = nnlab("check", "data=spirals", "model.hidden=[1]", f"hydra.run.dir={tmp_path / 'small'}", cwd=tmp_path)
    assert small.returncode == 1 and "step 3 failed" in small.stdout
    steps = {s["step"]: s["passed"] for s in json.loads((tmp_path / "small" / "check.json").read_text())["steps"]}
    assert steps == {1: True, 2: True, 3: False, 4: True}


def test_check_fails_gradient_flow_with_zero_init(tmp_path):
    out = nnlab("check", "init=zeros", f"hydra.run.dir={tmp_path / 'z'}", cwd=tmp_path)
    assert out.returncode == 1
    steps = {s["step"]: s["passed"] for s in json.loads((tmp_path / "z" / "check.json").read_text())["steps"]}
    assert steps[4] is False and steps[2] is False


def test_lr_find_suggests_a_rate_inside_its_range_on_mnist(tmp_path, mnist_root):
    out = nnlab(
        "lr-find",
        "data=mnist",
        f"data.source.root={mnist_root}",
        "data.subset=5000",
        "optimizer=sgd",
        "trainer.batch_size=64",
        f"hydra.run.dir={tmp_path / 'lr'}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert 1e-7 < result["suggestion"] < 10 and 1e-3 <= result["suggestion"] <= 1.0  # SGD on MNIST: ~1e-2..1e-1
    assert f"{result['suggestion']:.2e}" in out.stdout
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 1000
    assert "lr_find/smoothed_loss" in events(tmp_path / "lr").Tags()["scalars"]


@pytest.mark.slow
def test_lr_find_works_with_any_optimizer_and_model(tmp_path):
    for opt in ("adam", "rmsprop", "momentum"):
        out = nnlab("lr-find", f"optimizer={opt}", "lr_find.steps=30", f"hydra.run.dir={tmp_path / opt}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "suggested learning rate" in out.stdout
        assert f"train with it: nnlab train optimizer={opt} optimizer.lr=" in out.stdout  # a command to paste


def test_steepest_descent_finds_the_steepest_point():
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]
    loss = [2 - math.tanh(2 * (math.log10(lr) + 3)) for lr in lrs]  # falls fastest at lr = 1e-3
    assert steepest_descent(lrs, loss) == pytest.approx(1e-3, rel=0.3)
    assert steepest_descent(lrs[:2], loss[:2]) is None


def test_activation_stats_dead_and_saturated_fractions():
    relu_out = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.5, 0.0, 0.0]])  # units 0 and 2 never fire
    stats = diagnostics.activation_stats({"layer1": relu_out}, nn.ReLU())
    assert stats["stats/dead_frac/layer1"] == 0.5 and "stats/saturated_frac/layer1" not in stats
    sig_out = torch.tensor([[0.001, 0.5], [0.999, 0.3]])
    stats = diagnostics.activation_stats({"layer1": sig_out}, nn.Sigmoid(), saturation_eps=0.02)
    assert stats["stats/saturated_frac/layer1"] == 0.5 and "stats/dead_frac/layer1" not in stats
    z = torch.tensor([[-1.0, 1.0, -2.0, 2.0], [-3.0, 0.5, -1.0, -1.0]])  # units 0 and 2 below zero everywhere
    for act, stuck in ((nn.ReLU(), 0.5), (nn.LeakyReLU(), 0.0), (nn.ELU(), 0.0), (nn.Sigmoid(), 0.0)):
        assert diagnostics.activation_stats({"l": act(z)}, act, inputs={"l": z})["stats/no_grad_frac/l"] == stuck
    sig_far = torch.tensor([[-30.0, 0.0], [-40.0, 1.0]])  # a sigmoid unit far into its flat tail passes none
    assert (
        diagnostics.activation_stats({"l": sig_far.sigmoid()}, nn.Sigmoid(), inputs={"l": sig_far})[
            "stats/no_grad_frac/l"
        ]
        == 0.5
    )
    conv = torch.zeros(3, 4, 5, 5)
    conv[:, 1, 2, 2] = 1.0  # one channel fires at one position: alive
    assert diagnostics.activation_stats({"c": conv}, nn.ReLU())["stats/dead_frac/c"] == 0.75


def test_update_ratio_and_first_to_last_ratio():
    layer = nn.Linear(10, 10)
    before = [layer.weight.detach().clone()]
    with torch.no_grad():
        layer.weight.mul_(1.001)
    ratio = diagnostics.update_ratios([("layer1", layer)], before)["stats/update_ratio/layer1"]
    assert ratio == pytest.approx(1e-3, rel=1e-2)
    assert diagnostics.first_to_last_ratio(
        {"stats/grad_norm/layer1": 1e-4, "stats/grad_norm/layer2": 1.0}
    ) == pytest.approx(1e-4)


def test_the_lr_find_figure_keeps_every_line_on_the_chart_and_marks_the_divergence():
    from nnlab.commands.lr_find import RangeTest, figure

    lrs = [10 ** (-5 + 6 * i / 99) for i in range(100)]
    losses = [2.0 - 1.5 * min(i, 60) / 60 + (0 if i < 70 else 3 ** (i - 70)) for i in range(100)]
    losses[80] = float("nan")
    smoothed = [min(v, 1e30) if math.isfinite(v) else math.nan for v in losses]
    fig = figure(RangeTest(lrs, losses, smoothed, suggestion=1e-3), "t")
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    for line in ax.get_lines():
        ys = [y for y in line.get_ydata() if math.isfinite(y)]
        assert all(low <= y <= high for y in ys) or len(set(line.get_xdata())) == 1  # (vertical markers span it)
    assert any("diverging from" in t.get_text() for t in ax.get_legend().get_texts())


def test_batch_norms_learned_scale_and_shift_are_logged_per_layer(tmp_path):
    """Note 003: batch norm learns a scale and a shift per unit that can undo the normalization: their means
    per layer each epoch under stats/ (a chart of their own in CUSTOM SCALARS), their histograms."""
    run, _ = train(tmp_path, *FAST, "trainer.epochs=3", "model.batch_norm=true", "optimizer.lr=0.01")
    scale, shift = layer_stat(run, "stats/bn_scale/bn2"), layer_stat(run, "stats/bn_shift/bn2")
    assert len(scale) == len(shift) == 3 and scale[0] != 1.0 and shift[0] != 0.0  # moved from 1 and 0 by training
    acc = events(run)
    assert {"stats.bn_scale/bn1", "stats.bn_shift/bn2"} <= set(acc.Tags()["histograms"])
    from nnlab.training.diagnostics import batch_norms

    assert [
        n for n, _ in batch_norms(nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.BatchNorm1d(4, affine=False)))
    ] == ["bn1"]
