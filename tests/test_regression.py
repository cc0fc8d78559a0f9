"""Regression: the toy sets, MSE/MAE/R^2 in place of accuracy everywhere (terminal, metrics.jsonl,
TensorBoard, summary, report, ensemble, check), the softplus output, and the errors for what does not fit."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import events, metrics, nnlab, summary, train
from nnlab import metrics as task_metrics
from nnlab.data import describe, toy

SHORT = ["data.source.n_train=200", "data.source.n_test=200", "trainer.epochs=3", "trainer.progress=false"]


@pytest.mark.parametrize("name, dims", [("sine", 1), ("ripple", 2), ("bump", 1)])
def test_regression_sets_and_their_outliers(name, dims):
    make = getattr(toy, name)
    x, y, xt, yt = make(n_train=400, n_test=300, seed=3)
    assert x.shape == (400, dims) and y.shape == (400, 1) and xt.shape == (300, dims) and yt.shape == (300, 1)
    assert y.dtype == torch.float32 and describe({"_target_": f"nnlab.data.toy.{name}"}) == ("regression", 1)
    assert torch.equal(make(n_train=400, n_test=300, seed=3)[1], y)  # the seed decides everything
    x2, y2, xt2, yt2 = make(n_train=400, n_test=300, seed=3, outliers=0.1, outlier_scale=5.0)
    moved = (y2 - y).squeeze(1)
    assert torch.equal(x2, x) and torch.equal(yt2, yt)  # the test targets stay clean
    assert (moved != 0).sum() == 40 and moved[moved != 0].min() >= 5.0  # 10% of the training targets, pushed up
    if name == "bump":
        assert y.min() > 0 and yt.min() > 0  # multiplicative noise: positive targets


def test_metrics_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, 2, generator=g)
    pred = y + 0.3 * torch.randn(50, 2, generator=g)
    sums = task_metrics.sums("regression", pred[:20], y[:20]) + task_metrics.sums(
        "regression", pred[20:], y[20:]
    )  # two batches
    got = task_metrics.finish("regression", sums, 50)
    r2 = [1 - ((pred[:, j] - y[:, j]) ** 2).sum() / ((y[:, j] - y[:, j].mean()) ** 2).sum() for j in range(2)]
    assert got["mse"] == pytest.approx(((pred - y) ** 2).mean().item(), rel=1e-5)
    assert got["mae"] == pytest.approx((pred - y).abs().mean().item(), rel=1e-5)
    assert got["r2"] == pytest.approx(sum(r2).item() / 2, rel=1e-4)
    labels = torch.tensor([0, 1, 1, 2])
    assert task_metrics.finish("points", task_metrics.sums("points", torch.tensor([0, 1, 2, 2]), labels), 4) == {
        "acc": 0.75
    }


def test_a_regression_run_logs_mse_mae_r2_instead_of_accuracy(tmp_path):
    run, proc = train(tmp_path, "data=ripple", "loss=mse", *SHORT, "trainer.boundary_every=1")
    final = summary(run)["metrics"]
    assert {f"{m}/{s}" for m in ("loss", "mse", "mae", "r2") for s in ("train", "val", "test")} == set(final)
    assert final["loss/test"] == pytest.approx(final["mse/test"], rel=1e-5)  # loss=mse: the loss is the MSE
    epochs = [r for r in metrics(run) if "r2/val" in r]
    assert len(epochs) == 3 and not any("acc/train" in r for r in metrics(run))
    assert "r2/train" in proc.stdout and "mse/test" in proc.stdout and "acc" not in proc.stdout.replace("accuracy", "")
    ev = events(run)
    assert {"r2/val", "mse/val", "mae/test", "r2/test"} <= set(ev.Tags()["scalars"])
    assert "plots/regression_fit" in ev.Tags()["images"] and "plots/decision_boundary" not in ev.Tags()["images"]
    assert (run / "curves.png").stat().st_size > 0
    report = nnlab("report", str(run), cwd=tmp_path)
    assert report.returncode == 0 and "r2/val" in report.stdout and "best first by r2/val" in report.stdout


def test_the_network_learns_the_function(tmp_path):
    run, _ = train(tmp_path, "data=sine", "loss=mse", "trainer.epochs=30", "trainer.progress=false")
    final = summary(run)["metrics"]
    assert final["r2/test"] > 0.9 and final["mse/test"] < 0.05  # noise std 0.1: the floor is 0.01


def test_softplus_output_is_positive_everywhere(tmp_path):
    from nnlab.config.validate import load_run_config
    from nnlab.run_files import checkpoint
    from nnlab.training.setup import setup

    run, _ = train(tmp_path, "data=bump", "loss=mse", "loss.output=softplus", *SHORT)
    exp = setup(load_run_config(run))
    exp.model.load_state_dict(checkpoint.load(run / "checkpoints" / "last.pt")["model"])
    grid = torch.linspace(-50, 50, 2001, device=exp.device)[
        :, None
    ]  # far outside the data, where a linear output goes anywhere
    with torch.no_grad():
        pred = exp.loss_fn.link(exp.model(grid))
    assert pred.min() > 0
    assert summary(run)["metrics"]["r2/test"] > 0  # and it fits better than the mean
    import nnlab  # load_run predicts in the targets' units: through the link, positive too

    loaded = nnlab.load_run(run, which="last")
    raw = loaded.predict(grid.cpu().numpy())
    assert raw.min() > 0 and torch.equal(raw, loaded.loss_fn.link(loaded.model(grid.cpu())).squeeze(-1))
    with pytest.raises(ValueError, match="regression"):
        loaded.predict_proba(grid.cpu())


def test_ensemble_of_regressors_is_no_worse_than_its_mean_member(tmp_path):
    out = nnlab(
        "train",
        "-m",
        "data=sine",
        "loss=mse",
        "trainer.seed=0,1,2",
        *SHORT,
        f"hydra.sweep.dir={tmp_path / 'sw'}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    ens = nnlab("ensemble", str(tmp_path / "sw"), cwd=tmp_path)
    assert ens.returncode == 0, ens.stderr[-2000:]
    result = json.loads((tmp_path / "sw" / "ensemble.json").read_text())
    assert result["metrics"] == ["loss", "mse", "mae", "r2"]
    assert result["ensemble"]["mse"] <= result["members_mse_mean"] + 1e-9  # squared error is convex in the prediction
    assert result["ensemble"]["r2"] >= result["members_r2_mean"] - 1e-9


def test_check_babysits_a_regressor(tmp_path):
    out = nnlab("check", "data=sine", "loss=huber", f"hydra.run.dir={tmp_path / 'c'}", cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    steps = json.loads((tmp_path / "c" / "check.json").read_text())["steps"]
    assert all(s["passed"] for s in steps) and "train r2" in steps[2]["measured"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data=sine"], "needs class labels"),  # the default loss is cross-entropy
        (["data=sine", "loss=bce"], "needs class labels"),
        (["data=sine", "loss=mse", "early_stopping.metric=acc/val"], "regression logs loss, mse, mae, r2"),
        (["data=moons", "early_stopping.metric=r2/val"], "classification logs loss, acc"),
        (["data=moons", "loss=mse", "loss.output=softplus"], "for regression targets"),
        (["data=sine", "loss=mse", "loss.output=exp"], "loss.output"),
        (["data=sine", "loss=mse", "data.source.outliers=1.5"], "fraction of outliers"),
        (["data=sine", "loss=mse", "model=cnn"], "needs image data"),
    ],
)
def test_what_does_not_fit_regression_is_one_paragraph(tmp_path, overrides, message):
    out = nnlab("train", *overrides, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("how", ["standardize", "minmax"])
def test_a_scaled_target_trains_scaled_and_answers_in_its_own_units(tmp_path, how):
    """data.target_scaling: the loss sees (y - shift) / scale, the metrics and load_run's predictions are in
    the target's units: the same run with the targets x1000 has the same scaled loss and 1e6 x the MSE."""
    import nnlab as lib

    base = ["data=sine", "loss=mse", "trainer.epochs=3", "trainer.progress=false", f"data.target_scaling={how}"]
    small, _ = train(tmp_path, *base, run_dir="small")
    large, _ = train(tmp_path, *base, "data.source.target_scale=1000", run_dir="large")
    a, b = summary(small)["metrics"], summary(large)["metrics"]
    assert a["loss/test"] == pytest.approx(b["loss/test"], rel=1e-3) and a["r2/test"] == pytest.approx(
        b["r2/test"], abs=1e-3
    )
    assert b["mse/test"] == pytest.approx(1e6 * a["mse/test"], rel=1e-2) and b["mae/test"] == pytest.approx(
        1e3 * a["mae/test"], rel=1e-2
    )
    x = torch.linspace(-3, 3, 20)[:, None]
    assert torch.allclose(lib.load_run(large).predict(x), 1000 * lib.load_run(small).predict(x), rtol=1e-2, atol=1.0)
