"""The real `nnlab` CLI in a subprocess, on tiny data: its files, its TensorBoard events, its errors."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
import torch
from tensorboard.plugins.custom_scalar import layout_pb2

from conftest import TINY, events, hparams_experiment, metrics, nnlab, summary, train
from nnlab.compare import band
from screenshots import serve as tensorboard_server


def test_help_and_version(tmp_path):
    top = nnlab("--help", cwd=tmp_path)
    assert top.returncode == 0 and "train" in top.stdout
    version = nnlab("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("nnlab 0.")
    unknown = nnlab("trian", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown command" in unknown.stderr


def test_train_help_lists_every_group_and_option(tmp_path):
    out = nnlab("train", "--help", cwd=tmp_path)
    assert out.returncode == 0
    for line in (
        "activation: elu, gelu, leaky_relu, linear, maxout, prelu, relu, selu, sigmoid, silu, softplus, tanh",
        "model: cnn, cnn_classic, mlp, resnet18",
        "loss: bce, cross_entropy, huber, mse",
    ):
        assert line in out.stdout
    for option in (
        "he_normal",
        "lecun_normal",
        "orthogonal",
        "nadam",
        "adadelta",
        "warmup_cosine",
        "cyclic",
        "plateau",
        "spirals",
        "cifar10",
    ):
        assert option in out.stdout


def test_cfg_job_prints_the_composed_config(tmp_path):
    out = nnlab("train", "--cfg", "job", "activation=elu", "optimizer=sgd", "optimizer.lr=0.5", cwd=tmp_path)
    assert out.returncode == 0
    assert "_target_: torch.nn.ELU" in out.stdout and "lr: 0.5" in out.stdout
    assert not (tmp_path / "outputs").exists()  # printing the config runs nothing
    for line in (["activation=elu", "--cfg", "job"], ["activation=elu", "--cfg", "job", "-p", "activation"]):
        out = nnlab("train", *line, cwd=tmp_path)  # the option after the overrides, as people type it
        assert out.returncode == 0 and "torch.nn.ELU" in out.stdout, out.stderr
    out = nnlab("train", "-m", "activation=elu,relu", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 2 and "one of -m, --cfg, --info" in out.stderr and "Traceback" not in out.stderr


def test_train_writes_config_metrics_summary_checkpoints_and_events(tmp_path):
    run, proc = train(
        tmp_path,
        *TINY,
        "trainer.log_every=2",
        "trainer.boundary_every=1",
        "diagnostics.every=3",
        "diagnostics.histograms_every=1",
    )
    assert "acc/test" in proc.stdout  # the closing table
    s = summary(run)
    assert s["status"] == "ok" and s["epochs_run"] == 2 and s["best_epoch"] in (1, 2)
    assert set(s["metrics"]) >= {"loss/train", "acc/train", "loss/val", "acc/val", "loss/test", "acc/test"}
    assert 0.0 <= s["metrics"]["acc/test"] <= 1.0
    assert (run / "config.yaml").read_text().startswith("trainer:")
    assert (run / ".hydra" / "overrides.yaml").exists()
    env = json.loads((run / "environment.json").read_text())  # what is needed to repeat the run
    assert torch.__version__.startswith(env["packages"]["torch"].split("+")[0])
    assert env["device"] == s["device"] and "trainer.log_every=2" in env["command"]
    assert env["git_commit"] is None or len(env["git_commit"]) == 40

    rows = metrics(run)
    epochs = [r for r in rows if "loss/val" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    steps = [r["step"] for r in rows if "step/loss" in r]
    assert steps == list(range(1, s["steps"] + 1))  # every step's loss and global gradient norm
    layer_rows = [r for r in rows if "stats/grad_norm/layer1" in r]
    assert layer_rows and all("stats/update_ratio/layer1" in r and "stats/dead_frac/layer2" in r for r in layer_rows)

    acc = events(run)
    tags = set(acc.Tags()["scalars"])
    for tag in (
        "loss/train",
        "loss/val",
        "acc/train",
        "acc/val",
        "acc/test",
        "step/lr",
        "step/grad_norm",
        "stats/grad_norm/layer1",
        "stats/grad_norm/layer3",
        "time/epoch_s",
        "throughput/examples_per_s",
        "start/loss",
        "stats/act_mean/layer1",
        "stats/act_std/layer2",
        "stats/dead_frac/layer1",
        "stats/weight_norm/layer3",
        "stats/update_ratio/layer1",
        "stats/grad_ratio/first_to_last",
    ):
        assert tag in tags, tag
    groups = sorted({t.split("/")[0] for t in tags})  # TensorBoard orders its tag groups by name
    assert groups[:2] == ["acc", "loss"], groups  # the learning curves before any diagnostic
    logged = [e.value for e in acc.Scalars("loss/val")]
    assert logged == pytest.approx([r["loss/val"] for r in epochs], rel=1e-6)
    assert [e.step for e in acc.Scalars("loss/val")] == [r["epoch"] for r in epochs] == [1, 2]  # against the epoch
    assert acc.Scalars("step/loss")[-1].step == epochs[-1]["step"] > 2  # per-step values against the step
    assert acc.Scalars("acc/test")[-1].value == pytest.approx(s["metrics"]["acc/test"], rel=1e-6)
    images = acc.Images("plots/decision_boundary")
    assert len(images) == 2 and images[0].width == 192
    assert "_hparams_/session_start_info" in acc.summary_metadata  # the HPARAMS tab
    assert {"stats.weights/layer1", "stats.grads/layer3", "stats.activations/layer2"} <= set(acc.Tags()["histograms"])
    assert len(acc.Images("plots/activations_per_layer")) == 2  # at init and at the end
    for png in ("curves.png", "activations_init.png", "activations_final.png"):
        assert (run / png).stat().st_size > 1000

    for name in ("last", "best"):
        state = torch.load(run / "checkpoints" / f"{name}.pt", weights_only=True)
        assert state["format"] == "nnlab-checkpoint" and "model" in state and "optimizer" in state
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2


def test_same_seed_same_numbers(tmp_path):
    a, _ = train(tmp_path, *TINY, run_dir="a")
    b, _ = train(tmp_path, *TINY, run_dir="b")
    c, _ = train(tmp_path, *TINY, "trainer.seed=1", run_dir="c")
    assert summary(a)["metrics"] == summary(b)["metrics"]
    assert summary(a)["metrics"] != summary(c)["metrics"]

    def untimed(run):
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "throughput/"))} for r in metrics(run)]

    assert untimed(a) == untimed(b) and len(untimed(a)) > 10  # every logged number, bit for bit
    d, _ = train(tmp_path, *TINY, "trainer.deterministic=true", run_dir="d")
    assert untimed(d) == untimed(a)  # on CPU the default algorithms are already deterministic


def test_multirun_two_jobs_named_by_their_overrides(tmp_path):
    sweep = tmp_path / "sweep"
    out = nnlab("train", "-m", *TINY, "activation=relu,tanh", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        f"sweep {sweep}: 2 runs" in out.stdout and f"tensorboard --logdir {sweep}" in out.stdout
    )  # its closing summary
    assert "best run by acc/val:" in out.stdout and (sweep / "report.csv").exists()
    runs = sorted(p.name for p in sweep.iterdir() if (p / "summary.json").exists())
    assert runs == ["activation=relu", "activation=tanh"]  # what differs; TINY's constant overrides left out
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    names = EventMultiplexer().AddRunsFromDirectory(str(sweep)).Runs()  # the run names TensorBoard shows
    assert set(names) == {"activation=relu", "activation=tanh", "overview"}  # no "/tb"; the sweep's overview
    layout = events(sweep / runs[0]).Tags()["tensors"]
    assert "custom_scalars__config__" in layout
    for name in runs:
        assert summary(sweep / name)["status"] == "ok"
    shown = [hparams(sweep / name) for name in runs]  # the HParams tab: what was compared, not 100 constants
    assert shown[0].keys() == shown[1].keys() and {shown[0]["activation"], shown[1]["activation"]} == {"relu", "tanh"}
    assert {"data", "model", "optimizer", "init", "trainer.epochs"} <= shown[0].keys() and len(shown[0]) <= 12
    assert not any(k.startswith(("alarms.", "hydra", "check.", "trainer.progress")) for k in shown[0])


def hparams(run) -> dict:
    """The HParams plugin's record of a run: its hyperparameters as TensorBoard shows them."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = events(run)
    data = plugin_data_pb2.HParamsPluginData.FromString(
        acc.summary_metadata["_hparams_/session_start_info"].plugin_data.content
    )
    return {k: v.string_value or v.number_value for k, v in data.session_start_info.hparams.items()}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["activation=rellu"], "Did you mean activation=relu?"),
        (["optimizer=adamm"], "Choose one of: adadelta, adagrad, adam,"),
        (["trainer.epoch=3"], "Did you mean trainer.epochs?"),
        (["optimizer.lrr=0.1"], "Did you mean optimizer.lr?"),
        (["optimizer=sgd", "optimizer.momentum=0.5"], "add it with +optimizer.momentum=0.5"),
        (["optimizer.lr=abc"], "optimizer.lr='abc' is invalid: it must be a number"),
        (["trainer.batch_size=x"], "trainer.batch_size='x' is invalid"),
        (["loss=bce", "data=spirals"], "loss=bce is a binary loss"),
        (["model=cnn"], "model=cnn needs image data"),
        (["optimizer.lr=-1"], "the learning rate must be positive"),
        (["data.val_fraction=1.5"], "data.val_fraction=1.5 is invalid"),
        (["model.dropout=1.0"], "a dropout probability must be in [0, 1)"),
        (["model.hidden=[64,-1]"], "list of positive integers"),
        (["trainer.precision=fp8"], "choose one of fp32, bf16, fp16"),
        (["trainer.device=cuda"] if not torch.cuda.is_available() else ["trainer.device=tpu"], "trainer.device"),
        (["-m", "optimizer.lr=0.1,-1"], "optimizer.lr=-1 is invalid"),
    ],
)
def test_bad_input_gives_one_paragraph_and_exit_2(tmp_path, overrides, message):
    out = nnlab("train", *overrides, *TINY, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) == 1  # one paragraph, no stack
    assert not (tmp_path / "outputs").exists()  # nothing started


def test_works_from_any_directory_and_records_the_run(tmp_path):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    out = nnlab("train", *TINY, "trainer.epochs=1", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    (run,) = [
        p for p in (elsewhere / "outputs" / "runs").iterdir() if p.name != "overview"
    ]  # beside it: their HParams overview
    assert json.loads((run / "summary.json").read_text())["status"] == "ok"
    # named by what it sets, after the time (TensorBoard's run name), and resumed by its path as printed
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_" + re.escape(",".join(TINY[:2]) + ",trainer.epochs=1"), run.name
    ), run.name
    out = nnlab("train", f"resume={run}", "trainer.epochs=2", cwd=elsewhere)
    assert out.returncode == 0 and json.loads((run / "summary.json").read_text())["epochs_run"] == 2, out.stderr


def test_hparams_tab_shows_the_swept_columns_first(tmp_path):
    """Asked as TensorBoard's HPARAMS dashboard asks its server: the columns it shows (hparamsLimit) are the
    swept settings, marked as differing, from every run (not from one run's), against final metrics."""
    sweep = tmp_path / "s"
    out = nnlab(
        "train", "-m", *TINY, "optimizer=sgd,adam", "trainer.seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    with tensorboard_server(sweep) as url:
        experiment = hparams_experiment(url, 2)
        shown = [(h["name"], h.get("differs", False)) for h in experiment["hparamInfos"]]
        assert shown == [("optimizer", True), ("trainer.seed", True)], shown  # what was swept, first
        every = hparams_experiment(url, 0)["hparamInfos"]
        assert {h["name"] for h in every} == {"optimizer", "trainer.seed"}  # only what differs: the columns shown
        optimizer = next(h for h in every if h["name"] == "optimizer")
        assert sorted(optimizer["domainDiscrete"]) == ["adam", "sgd"]  # both runs' values, not one run's
        metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
        assert {"acc/train", "acc/val", "acc/test", "loss/val"} <= set(metrics)
        assert metrics[:3] == ["acc/test", "acc/val", "loss/val"]  # what a comparison reads, first
        seed = next(h for h in every if h["name"] == "trainer.seed")
        assert seed["domainDiscrete"] == ["0", "1"]  # integers shown as 0 and 1, not 0.0000
        runs = json.loads(urllib.request.urlopen(f"{url}/data/runs", timeout=10).read())
        assert {"mean/optimizer=sgd", "mean/optimizer=adam"} <= set(runs), runs  # a line per setting
    for opt in ("sgd", "adam"):  # the mean of its seeds' epoch metrics, at each epoch's step
        seeds = [events(sweep / f"optimizer={opt},trainer.seed={i}").Scalars("loss/val") for i in (0, 1)]
        mean = events(sweep / "mean" / f"optimizer={opt}").Scalars("loss/val")
        assert [e.step for e in mean] == [e.step for e in seeds[0]] and len(mean) == 2
        assert [e.value for e in mean] == pytest.approx([(a.value + b.value) / 2 for a, b in zip(*seeds)], rel=1e-6)
        acc = events(
            sweep / "mean" / f"optimizer={opt}"
        )  # the seeds' 95% band, drawn in CUSTOM SCALARS' first category
        bands = [band([a.value, b.value]) for a, b in zip(*seeds)]
        low = [max(0.0, b.low) for b in bands]  # a loss's band never below 0, an accuracy's never above 1
        assert [e.value for e in acc.Scalars("seeds/loss/val/low")] == pytest.approx(low, rel=1e-5)
        assert max(e.value for e in acc.Scalars("seeds/acc/val/high")) <= 1.0
        assert [e.value for e in acc.Scalars("seeds/loss/val/high")] == pytest.approx([b.high for b in bands], rel=1e-5)
        layout = layout_pb2.Layout.FromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
        (category,) = layout.category
        margin = next(c.margin for c in category.chart if c.title.startswith("loss/val"))
        assert category.title == "1 learning curves (per epoch)" and margin.series[0].lower == "seeds/loss/val/low"


@pytest.mark.slow
def test_hparams_tab_of_runs_alone_shows_what_differs(tmp_path):
    """`tensorboard --logdir outputs/runs`: runs started one by one are one HPARAMS table whose first columns
    are what differs between them (one experiment for the folder, refreshed as each run ends: TensorBoard
    takes the first of several, so the runs write none of their own), and a continued run stays in it."""
    for optimizer in ("sgd", "adam"):
        out = nnlab("train", *TINY, f"optimizer={optimizer}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        time.sleep(1.1)  # another second: another folder name
    root = tmp_path / "outputs" / "runs"
    runs = sorted(p for p in root.iterdir() if (p / "summary.json").exists())
    assert len(runs) == 2 and (root / "overview").is_dir()
    assert not any("_hparams_/experiment" in events(run).summary_metadata for run in runs)  # the folder's, once
    assert "_hparams_/experiment" in events(root / "overview").summary_metadata
    out = nnlab("train", f"resume={runs[0]}", "trainer.epochs=3", cwd=tmp_path)  # continued in place
    assert out.returncode == 0, out.stderr
    assert len(list((root / "overview").glob("events.out.tfevents.*"))) == 1  # replaced, not added to
    assert not list(root.rglob(".lock"))
    with tensorboard_server(root) as url:
        everything = {h["name"]: h for h in hparams_experiment(url, 0)["hparamInfos"]}
        assert everything.keys() == {"optimizer", "optimizer.lr", "trainer.epochs"}, (
            everything
        )  # what differs (epochs: 3 and 2 since the resume; the rate, each optimizer's own default), no blank cell
        assert sorted(everything["optimizer"]["domainDiscrete"]) == ["adam", "sgd"]
        metrics = [m["name"]["tag"] for m in hparams_experiment(url, 1)["metricInfos"]]
        assert metrics[:3] == ["acc/test", "acc/val", "loss/val"] and not any(m.startswith("stats/") for m in metrics)


def test_other_libraries_chatter_stays_out_of_train_log(tmp_path):
    """matplotlib's first start (a fresh font cache) logs `generated new fontManager` at INFO: not nnlab's to show."""
    run = tmp_path / "run"
    out = nnlab("train", *TINY, f"hydra.run.dir={run}", cwd=tmp_path, env={"MPLCONFIGDIR": str(tmp_path / "mpl")})
    assert out.returncode == 0 and (tmp_path / "mpl").is_dir(), out.stderr  # the cache was built in this run
    assert "fontManager" not in (run / "train.log").read_text() + out.stdout + out.stderr
    assert "run starts:" in (run / "train.log").read_text()


@pytest.mark.parametrize(
    "activation,chart", [("relu", "dead units (rectifiers)"), ("tanh", "saturated units (sigmoid, tanh)")]
)
def test_custom_scalars_chart_only_what_the_run_logs(tmp_path, activation, chart):
    """No chart waits on tags that never come ("Missing Tags"): a ReLU net has dead units, a tanh net
    saturated ones, a run without diagnostics no diagnostics category."""
    from conftest import TINY, train

    run, _ = train(tmp_path, *TINY, f"activation={activation}")
    acc = events(run)
    layout = layout_pb2.Layout.FromString(acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {c.title for cat in layout.category for c in cat.chart}
    other = ({"dead units (rectifiers)", "saturated units (sigmoid, tanh)"} - {chart}).pop()
    assert chart in charts and other not in charts
    tags = set(acc.Tags()["scalars"])
    for cat in layout.category:
        for c in cat.chart:  # every chart's tags are there
            assert any(re.match(r, t) for r in c.multiline.tag for t in tags), (c.title, sorted(tags))
    assert ("gradient norm per layer" in charts) is False  # 8 steps, statistics every 50: none to chart
    (tmp_path / "q").mkdir()
    often, _ = train(tmp_path / "q", *TINY, "diagnostics.every=2")
    layout = layout_pb2.Layout.FromString(
        events(often).Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    )
    assert "gradient norm per layer" in {c.title for cat in layout.category for c in cat.chart}
