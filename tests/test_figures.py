"""figures.py: what each figure shows (sizes, lines, pixels), and eval_mode, which every figure uses."""

from __future__ import annotations

import pytest
import torch
from matplotlib.image import imread
from torch import nn

from nnlab.nn import eval_mode
from nnlab.views import figures


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
    rows = [
        {"epoch": e, "loss/train": 1 / e, "acc/train": 1 - 1 / (e + 1), "loss/val": 1.2 / e, "acc/val": 0.5}
        for e in range(1, 6)
    ]
    curves = [figures.epoch_curve(rows, split, "acc", split) for split in ("train", "val")]
    assert curves[0].epochs == (1, 2, 3, 4, 5) and curves[1].loss[0] == 1.2
    assert figures.epoch_curve(rows, "test", "acc", "test") is None
    figures.curves_figure(curves, tmp_path / "run.png")
    many = [figures.Curve(f"run{i}", (1, 2), (1.0, "nan"), (0.5, 0.6)) for i in range(5)]
    fig = figures.curves_figure(many, tmp_path / "report.png", log_loss=True)
    assert imread(tmp_path / "run.png").shape[:2] == (400, 1000)
    assert imread(tmp_path / "report.png").shape[:2] == (492, 1100)  # the legend below, two columns of three
    sizes = [
        t.get_fontsize()
        for t in fig.findobj(lambda o: hasattr(o, "get_fontsize") and getattr(o, "get_text", None) and o.get_text())
    ]
    assert sizes and min(sizes) >= 9  # every text readable on a slide


def test_a_reports_curves_keep_bands_in_range_mark_failures_and_label_the_log_axis_plainly(tmp_path):
    low = figures.Curve("a", (1, 2), (0.5, 0.4), (0.95, 0.97))
    high = figures.Curve("a", (1, 2), (0.6, 0.45), (0.99, 1.0))
    mean = figures.mean_curve([low, high], "zeros (n=2)")
    (lo, hi), _ = mean.band[1]
    assert hi > 1.0 and lo < 0.95  # a 95% interval of two seeds is wide (t = 12.7) ...
    gone = figures.Curve("lr=100", (), (), (), failed="diverged 2/2")
    fig = figures.curves_figure([mean, gone, low], tmp_path / "r.png", log_loss=True)
    ax_loss, ax_score = fig.axes[:2]
    band = ax_score.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() <= 1.0 and band.min() >= 0.0  # ... but never drawn beyond what an accuracy can be
    legend = (
        [t.get_text() for t in fig.legends[0].get_texts()]
        if fig.legends
        else [t.get_text() for t in ax_score.get_legend().get_texts()]
    )
    assert "lr=100: diverged 2/2" in legend  # a setting that diverged is in the legend, marked, not dropped
    fig.canvas.draw()
    labels = [t.get_text() for t in ax_loss.get_yticklabels(minor=True) + ax_loss.get_yticklabels() if t.get_text()]
    assert labels and all("10^" not in t and "\\times" not in t for t in labels), labels  # 0.4, not 4x10^-1
    assert any(figures.BAND in t.get_text() for t in fig.texts)  # what a band means, said on the figure


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


def test_activations_panels_share_one_x_axis():
    fig = figures.activations_figure({"layer1": torch.randn(64, 8) * 3, "layer2": torch.randn(64, 8) * 0.01})
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()  # the collapsed layer is a spike on the same axis
    assert fig.get_size_inches()[0] >= 6


def test_a_sweep_on_points_draws_each_boundary_and_one_grid(tmp_path):
    from conftest import TINY, events, nnlab

    sweep = tmp_path / "s"
    out = nnlab(
        "train",
        "-m",
        *TINY,
        "activation=relu,tanh,sigmoid",
        "init=zeros,he_normal",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    run = sweep / "activation=tanh,init=he_normal"
    image = imread(run / "decision_boundary.png")
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert "plots/decision_boundary_final" in events(run).Tags()["images"]
    # the test points' classes tint the plane: both class colours are in the picture
    tint = (figures.palette() * 0.35 + 255 * 0.65) / 255
    pixels = torch.from_numpy(image[..., :3].copy()).reshape(-1, 3)
    assert all(((pixels - t).abs().amax(1) < 0.02).any() for t in tint[:2])
    grid = imread(sweep / "decision_boundaries.png")
    assert grid.shape[0] > grid.shape[1]  # 3 rows (activation) x 2 columns (init)
    assert "sweep/decision_boundaries" in events(sweep / "overview").Tags()["images"]
    assert "sweep/report" in events(sweep / "overview").Tags()["images"]


def test_image_runs_draw_a_confusion_matrix_and_their_mistakes(tmp_path, mnist_root):
    from conftest import events, summary, train

    run, _ = train(
        tmp_path,
        "data=mnist",
        f"data.source.root={mnist_root}",
        "data.subset=600",
        "trainer.epochs=1",
        "trainer.progress=false",
        "model.hidden=[16]",
    )
    s = summary(run)
    matrix = torch.tensor(s["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000  # the whole test set
    assert matrix.trace().item() / 10_000 == pytest.approx(s["metrics"]["acc/test"], abs=1e-6)
    wrong = imread(run / "misclassified.png")
    assert wrong.shape[0] > 500 and wrong.shape[1] > 500  # a 5 x 5 grid
    assert imread(run / "confusion_matrix.png").shape[0] > 400
    assert {"plots/confusion_matrix", "plots/misclassified"} <= set(events(run).Tags()["images"])


def test_a_stacks_runs_draw_the_figures_asked_for_and_report_draws_the_rest(tmp_path):
    """sweep.run_figures: final (default: the final model's figures, which the sweep's grid uses), all (as a
    run alone), none; `nnlab report RUN --figures` draws a run's figures afterwards."""
    from conftest import TINY, events, nnlab

    pngs = {}
    for choice in ("final", "all", "none"):
        sweep = tmp_path / choice
        out = nnlab(
            "train",
            "-m",
            *TINY,
            "trainer.epochs=1",
            "trainer.seed=0,1",
            f"sweep.run_figures={choice}",
            f"hydra.sweep.dir={sweep}",
            cwd=tmp_path,
        )
        assert out.returncode == 0 and "2 seeds as one stack" in out.stdout, out.stderr[-2000:]
        pngs[choice] = {p.name for p in (sweep / "trainer.seed=1").glob("*.png")}
    assert pngs["final"] == {"decision_boundary.png"}
    assert pngs["all"] == {"decision_boundary.png", "curves.png", "activations_init.png", "activations_final.png"}
    assert pngs["none"] == set()
    assert "plots/activations_per_layer" in events(tmp_path / "all" / "trainer.seed=1").Tags()["images"]
    assert "plots/activations_per_layer" not in events(tmp_path / "final" / "trainer.seed=1").Tags()["images"]
    run = tmp_path / "none" / "trainer.seed=1"
    out = nnlab("report", str(run), "--figures", cwd=tmp_path)
    assert out.returncode == 0 and "figures of" in out.stdout, out.stderr[-2000:]
    assert {p.name for p in run.glob("*.png")} >= {"decision_boundary.png", "curves.png", "activations_final.png"}
    assert imread(run / "decision_boundary.png").shape[0] > 300
    bad = nnlab(
        "train",
        "-m",
        *TINY,
        "trainer.seed=0,1",
        "sweep.run_figures=some",
        f"hydra.sweep.dir={tmp_path / 'bad'}",
        cwd=tmp_path,
    )
    assert bad.returncode == 2 and "sweep.run_figures" in bad.stdout + bad.stderr


def test_a_one_epoch_curve_shows_its_point_on_a_whole_epoch_axis(tmp_path):
    one = [figures.Curve("train", [1], [0.5], [0.8]), figures.Curve("val", [1], [0.6], [0.7], "--")]
    fig = figures.curves_figure(one, tmp_path / "one.png")
    assert imread(tmp_path / "one.png").shape[:2] == (400, 1000)
    for ax in fig.axes[:2]:  # a marker per point, the axis spanning the epoch (not 0.945..1.050 around an empty frame)
        assert ax.get_xlim() == (0.5, 1.5) and all(line.get_marker() == "o" for line in ax.get_lines())
        assert list(ax.get_xticks()) == [1]  # one whole epoch, no 0.5 or 1.5 ticks


def test_a_grid_balances_its_rows_keeps_the_sweeps_order_and_text_of_9_points(tmp_path):
    from matplotlib.image import imsave

    paths = []
    for i in range(5):
        paths.append(str(tmp_path / f"{i}.png"))
        imsave(paths[-1], torch.rand(40, 40, 3).numpy())
    names = ["zeros", "normal_small", "normal_large", "xavier_uniform", "he_normal"]  # as the sweep lists them
    fig = figures.grid_figure(
        [(f"init={n}", "", p) for n, p in zip(names, paths)], "decision boundaries: 5 settings " * 6
    )
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == [f"init={n}" for n in names]  # in order, each titled
    assert fig.get_size_inches()[0] > fig.get_size_inches()[1]  # 2 rows of at most 4, not one tall column
    assert [ax.get_subplotspec().rowspan.start for ax in shown] == [0, 0, 0, 1, 1]  # 3 + 2, not 4 + 1
    long = figures.grid_figure([("", "init=zeros,optimizer.lr=0.001,init.bias=0.01", paths[0])] * 2, "t")
    assert all(len(w) > 6 for w in long.axes[0].get_title().replace("\n", ",").split(",") if w), long.axes[
        0
    ].get_title()
    texts = [t for ax in fig.axes for t in (ax.title, ax.yaxis.label) if t.get_text()] + [fig._suptitle]
    assert min(t.get_fontsize() for t in texts) >= 9 and "\n" in fig._suptitle.get_text()  # a long title wraps
    table = figures.grid_figure(
        [(f"activation={a}", f"init={i}", paths[0]) for a in ("relu", "tanh") for i in ("zeros", "he")], "t"
    )
    assert [ax.get_title() for ax in table.axes[:2]] == ["init=zeros", "init=he"] and table.axes[
        0
    ].get_ylabel() == "activation=relu"
