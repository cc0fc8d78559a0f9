"""hydra/launcher=batched (the default of `nnlab train -m`): jobs that can train together train as one
stack, and each member is indistinguishable from the same config run alone."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import events, metrics, nnlab, summary, train

SHORT = ["data.source.n_train=400", "data.source.n_test=100", "trainer.progress=false", "trainer.log_every=1"]


def step_losses(run) -> list[float]:
    return [r["step/loss"] for r in metrics(run) if "step/loss" in r]


def same_as_alone(tmp_path, sweep, grid: dict, common: list[str], rel: float = 1e-5) -> list[dict]:
    """Every member of `sweep` (subdir = job number) against its config run alone: the first 50 per-step
    training losses within `rel`, and the same status, alarms, epochs and final metrics."""
    summaries = []
    for i, values in enumerate(itertools.product(*grid.values())):
        overrides = [f"{k}={v}" for k, v in zip(grid, values)]
        alone, _ = train(tmp_path, *common, *overrides, run_dir=f"alone{i}")
        member = sweep / str(i)
        a, b = step_losses(alone)[:50], step_losses(member)[:50]
        assert len(a) == len(b) > 0, overrides
        assert all(x == y or abs(x - y) <= rel * abs(x) for x, y in zip(a, b) if isinstance(x, float)), overrides
        sa, sb = summary(alone), summary(member)
        for key in ("status", "epochs_run", "best_epoch", "stopped_early", "steps"):
            assert sa[key] == sb[key], (overrides, key)
        assert [x["name"] for x in sa["alarms"]] == [x["name"] for x in sb["alarms"]], overrides
        assert sa["metrics"].keys() == sb["metrics"].keys()
        assert all(
            abs(sa["metrics"][k] - sb["metrics"][k]) <= 1e-5 * max(1, abs(sa["metrics"][k])) for k in sa["metrics"]
        ), overrides
        assert boundaries(alone) == boundaries(member), overrides  # the stack's planes: one pass, the same pictures
        la, lb = layer_rows(alone), layer_rows(member)  # the per-layer statistics, measured for the stack in one pass
        assert la.keys() == lb.keys() and all(la[t].keys() == lb[t].keys() for t in la), overrides
        assert all(abs(la[t][k] - lb[t][k]) <= 1e-4 * abs(la[t][k]) + 1e-6 for t in la for k in la[t]), overrides
        summaries.append(sb)
    return summaries


def layer_rows(run) -> dict[int, dict]:
    """The per-layer statistics rows of a run's metrics.jsonl, by step."""
    return {
        r["step"]: {k: v for k, v in r.items() if "/layer" in k or k.startswith("grad_ratio")}
        for r in metrics(run)
        if "stats/weight_norm/layer1" in r
    }


def boundaries(run) -> list[tuple[int, bytes]]:
    """The decision-boundary images a run logged to TensorBoard during training: (step, PNG)."""
    acc = events(run)
    logged = "plots/decision_boundary" in acc.Tags()["images"]
    return [(e.step, e.encoded_image_string) for e in acc.Images("plots/decision_boundary")] if logged else []


def sweep_of(tmp_path, grid: dict, common: list[str], *extra: str):
    sweep = tmp_path / "sweep"
    out = nnlab(
        "train",
        "-m",
        *common,
        *extra,
        *(f"{k}={','.join(v)}" for k, v in grid.items()),
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return sweep, out


@pytest.mark.slow
def test_a_grid_of_seeds_rates_dropout_and_early_stopping_matches_each_run_alone(tmp_path):
    """Measured: bit for bit (0 difference) on this CPU: the stack's batched products equal the single ones."""
    grid = {
        "trainer.seed": ["0"],
        "optimizer.lr": ["0.003", "30"],
        "model.dropout": ["0.0", "0.3"],
        "early_stopping.patience": ["1", "100"],
    }
    common = [*SHORT, "trainer.epochs=6", "early_stopping.metric=acc/val", "early_stopping.min_delta=0.01"]
    sweep, out = sweep_of(tmp_path, grid, common)
    assert (
        "[1/1] 8 runs as one stack (optimizer.lr=0.003,30 × model.dropout=0.0,0.3 × early_stopping.patience=1,100)"
        in (out.stdout)
    )
    assert "cannot share one stack" not in out.stdout  # with and without dropout: one stack, truly
    summaries = same_as_alone(tmp_path, sweep, grid, common)
    statuses = [s["status"] for s in summaries]
    assert statuses.count("diverged") == 4 and statuses.count("ok") == 4  # lr=30 diverges alone, the others go on
    assert any(s["stopped_early"] for s in summaries) and not all(
        s["stopped_early"] for s in summaries if s["status"] == "ok"
    )
    assert all(s["batch"]["members"] == 8 for s in summaries)
    assert summary(sweep / "1")["epochs_run"] == 6 and len(boundaries(sweep / "1")) == 2  # epochs 5 and 6, in one pass
    assert (
        list(layer_rows(sweep / "1")) == [50] and "stats/dead_frac/layer2" in layer_rows(sweep / "1")[50]
    )  # diagnostics.every


@pytest.mark.parametrize(
    "optimizer, extra",
    [
        ("sgd", ["optimizer.lr=0.1,0.05"]),
        pytest.param("momentum", ["optimizer.momentum=0.5,0.9"], marks=pytest.mark.slow),
        pytest.param("nesterov", ["optimizer.lr=0.1,0.01"], marks=pytest.mark.slow),
        pytest.param("adam", ["optimizer.betas=[0.9,0.999],[0.5,0.9]"], marks=pytest.mark.slow),
        pytest.param("adamw", ["optimizer.weight_decay=0.01,0.1"], marks=pytest.mark.slow),
        pytest.param("rmsprop", ["optimizer.alpha=0.9,0.99"], marks=pytest.mark.slow),
        pytest.param("yogi", ["optimizer.lr=0.01,0.003"], marks=pytest.mark.slow),
    ],
)
def test_every_optimizer_and_its_settings_per_member(tmp_path, optimizer, extra):
    grid = {
        k: v.split(",") if not v.startswith("[") else v.replace("],[", "]|[").split("|")
        for k, v in (e.split("=", 1) for e in extra)
    }
    common = [*SHORT, "trainer.epochs=2", f"optimizer={optimizer}", "regularization.clip_grad_norm=1.0"]
    sweep = tmp_path / "sweep"
    args = [f"{k}={','.join(v)}" for k, v in grid.items()]
    out = nnlab(
        "train",
        "-m",
        *common,
        *[e for e in extra if "=" in e and e.split("=")[0] not in grid],
        *args,
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
        cwd=tmp_path,
    )
    assert out.returncode == 0 and "as one stack" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    same_as_alone(tmp_path, sweep, grid, [*common, *[e for e in extra if e.split("=")[0] not in grid]])


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["prelu", "maxout"])
def test_batch_norm_learnt_slopes_maxout_and_activity_l1_stack_and_match_their_runs_alone(tmp_path, activation):
    """Batch norm (per-member affine parameters and running statistics, frozen once a member stops early),
    PReLU's per-member slopes, maxout's pieces, activity L1 per member, input noise and dropout: one stack."""
    grid = {"trainer.seed": ["0", "1"], "regularization.activity_l1": ["0.0", "0.001"]}
    common = [
        *SHORT,
        "trainer.epochs=6",
        f"activation={activation}",
        "model.batch_norm=true",
        "model.dropout=0.1",
        "regularization.input_noise=0.1",
        "early_stopping.patience=1",
        "early_stopping.metric=acc/val",
        "early_stopping.min_delta=0.01",
    ]
    sweep, out = sweep_of(tmp_path, grid, common)
    assert "4 runs as one stack" in out.stdout, out.stdout[-2000:]
    summaries = same_as_alone(tmp_path, sweep, grid, common, rel=0)
    assert len({s["epochs_run"] for s in summaries}) > 1  # members stopped at different epochs


@pytest.mark.slow
def test_members_whose_optimizers_differ_in_class_step_their_own_and_match_their_runs_alone(tmp_path):
    """One stack, an optimizer step per member (SGD and Adagrad cannot share one stacked update): each member
    steps its own stack of one over its views into the stack, and equals its run alone."""
    grid = {"optimizer": ["sgd", "adagrad"]}
    common = [*SHORT, "trainer.epochs=2", "regularization.clip_grad_norm=1.0"]
    sweep, out = sweep_of(tmp_path, grid, common)
    assert (
        "2 runs as one stack" in out.stdout
        and "step one optimizer each (the members' optimizers differ in class" in out.stdout
    )
    summaries = same_as_alone(tmp_path, sweep, grid, common)
    assert all(
        s["metrics"]["loss/train"] < 0.6 for s in summaries
    )  # both trained (a stale step would leave them at ln 2)


@pytest.mark.slow
def test_mnist_members_match_and_their_checkpoints_serve_resume_transfer_and_ensembles(tmp_path, mnist_root):
    grid = {"trainer.seed": ["0", "1", "2"]}
    common = [
        "data=mnist",
        f"data.source.root={mnist_root}",
        "data.subset=512",
        "model.hidden=[64,32]",
        "trainer.epochs=2",
        "trainer.batch_size=64",
        "trainer.progress=false",
        "trainer.log_every=1",
    ]
    sweep, _ = sweep_of(tmp_path, grid, common)
    same_as_alone(tmp_path, sweep, grid, common)
    state = torch.load(sweep / "0" / "checkpoints" / "last.pt", weights_only=True)
    size = sum(v.numel() for v in state["model"].values())
    assert size == 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10  # its own weights, not the whole stack
    more = nnlab("train", f"resume={sweep / '0'}", "trainer.epochs=3", cwd=tmp_path)
    assert more.returncode == 0 and summary(sweep / "0")["epochs_run"] == 3, more.stderr[-2000:]
    ensemble = nnlab("ensemble", str(sweep), cwd=tmp_path)
    assert ensemble.returncode == 0 and "ensemble of 3 runs" in ensemble.stdout, ensemble.stderr[-2000:]
    report = nnlab("report", str(sweep), cwd=tmp_path)
    assert report.returncode == 0 and "3 runs under" in report.stdout


def test_a_stack_of_models_without_hidden_layers_measures_its_layers(tmp_path):
    """model.hidden=[] (logistic regression) stacks: the per-layer statistics, measured for the stack at
    once, have no hidden activations to read, and each member logs its layer's norms as its run alone does."""
    sweep, _ = sweep_of(
        tmp_path, {"trainer.seed": ["0", "1"]}, [*SHORT, "model.hidden=[]", "trainer.epochs=2", "diagnostics.every=5"]
    )
    for i in (0, 1):
        assert summary(sweep / str(i))["status"] == "ok"
        rows = layer_rows(sweep / str(i))
        assert rows and all("stats/weight_norm/layer1" in r and "stats/act_mean/layer1" not in r for r in rows.values())


def test_what_cannot_stack_runs_alone_and_says_why(tmp_path):
    sweep = tmp_path / "sweep"
    out = nnlab(
        "train",
        "-m",
        *SHORT,
        "trainer.epochs=1",
        "trainer.seed=0,1",
        "sweep.on_failure=stop",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count(" (alone: ") == 2 and "(alone: sweep.on_failure=stop" in out.stdout
    basic = nnlab(
        "train",
        "-m",
        *SHORT,
        "trainer.epochs=1",
        "trainer.seed=0,1",
        "hydra/launcher=basic",
        f"hydra.sweep.dir={tmp_path / 'basic'}",
        cwd=tmp_path,
    )
    assert basic.returncode == 0 and "one stack" not in basic.stdout
    assert len(list((tmp_path / "basic").glob("*/summary.json"))) == 2
    # SELU with its AlphaDropout stacks too: each member's masks from its own generator, as alone
    selu = ["activation=selu", "model.dropout=0.05", "trainer.epochs=2"]
    out = nnlab("train", "-m", *SHORT, *selu, "trainer.seed=0,1", f"hydra.sweep.dir={tmp_path / 'selu'}", cwd=tmp_path)
    assert out.returncode == 0 and "2 seeds as one stack" in out.stdout, out.stdout[-2000:]
    alone = nnlab("train", *SHORT, *selu, "trainer.seed=1", f"hydra.run.dir={tmp_path / 'alone'}", cwd=tmp_path)
    assert alone.returncode == 0
    assert summary(tmp_path / "selu" / "trainer.seed=1")["metrics"] == summary(tmp_path / "alone")["metrics"]


@pytest.mark.slow
def test_a_killed_batched_sweep_resumes_to_the_uninterrupted_sweeps_numbers(tmp_path):
    common = [*SHORT, "trainer.epochs=8", "trainer.checkpoint_every=5", "model.dropout=0.2"]
    seeds = "trainer.seed=0,1,2,3"
    full, _ = sweep_of(tmp_path, {"trainer.seed": ["0", "1", "2", "3"]}, common)
    killed = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "nnlab",
        "train",
        "-m",
        *common,
        seeds,
        f"hydra.sweep.dir={killed}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not any(len(p.read_text().splitlines()) > 40 for p in killed.glob("*/metrics.jsonl")):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(killed.glob("*/summary.json"))
    out = subprocess.run([*args, "resume=auto"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    for i in range(4):
        assert summary(killed / str(i))["metrics"] == summary(full / str(i))["metrics"]
        a = torch.load(killed / str(i) / "checkpoints" / "last.pt", weights_only=True)["model"]
        b = torch.load(full / str(i) / "checkpoints" / "last.pt", weights_only=True)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert _untimed_rows(killed / str(i)) == _untimed_rows(full / str(i))


def _untimed_rows(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if not k.startswith(("time/", "throughput/"))} for x in lines]


def test_a_jobs_config_set_from_the_first_jobs_equals_hydras_own(tmp_path):
    """The launcher sets a job that differs from the first only in values on a copy of the first's config
    (milliseconds) instead of composing it (a tenth of a second): the result is Hydra's own, to the letter."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    from nnlab.config.schema import register_configs
    from nnlab.jobs.stacking import sweep_config

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_module("nnlab.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "train", overrides=[f"hydra.sweep.dir={tmp_path}"], run_mode=RunMode.MULTIRUN
        )
        for first, job in (
            (["trainer.seed=0", "optimizer.lr=0.1"], ["trainer.seed=3", "optimizer.lr=0.01"]),
            (["optimizer.betas=[0.9,0.999]"], ["optimizer.betas=[0.5,0.9]"]),
            (["model.hidden=[8]", "model.dropout=0.0"], ["model.hidden=[4,4]", "model.dropout=0.5"]),
        ):
            fast = sweep_config(loader.load_sweep_config(master, first), first, job)
            real = loader.load_sweep_config(master, job)
            OmegaConf.copy_cache(from_config=master, to_config=fast)
            with open_dict(fast), open_dict(real):
                fast.hydra.runtime.cwd = real.hydra.runtime.cwd = "."
            assert OmegaConf.to_container(fast) == OmegaConf.to_container(real), job
        base = loader.load_sweep_config(master, ["activation=relu"])
        assert sweep_config(base, ["activation=relu"], ["activation=tanh"]) is None  # a config group: composed
        assert sweep_config(base, ["activation=relu"], ["+trainer.foo=1"]) is None
    GlobalHydra.instance().clear()


EXPERIMENTS = sorted(p.stem for p in (Path(__file__).parents[1] / "src/nnlab/conf/experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_a_jobs_records_read_back_as_omegaconfs_own_yaml(experiment):
    """config.text.config_yaml (libyaml, ~1 ms) writes every job's .hydra/ records and config.yaml: read
    back, each is what OmegaConf.to_yaml (~13 ms) writes, for every experiment's config, Hydra's node and the
    resolved config, strings that read as numbers or booleans kept strings."""
    from omegaconf import OmegaConf

    from nnlab.cli.command_line import compose
    from nnlab.config.text import config_yaml

    cfg = compose([f"experiment={experiment}", "+data.note='1e5'", "+data.flag='yes'"], hydra=True)
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    for node, resolve in ((cfg.hydra, False), (task, False), (task, True)):
        fast, slow = config_yaml(node, resolve), OmegaConf.to_yaml(node, resolve=resolve)
        assert OmegaConf.to_container(OmegaConf.create(fast)) == OmegaConf.to_container(OmegaConf.create(slow))
    assert "note: '1e5'" in config_yaml(task) and "flag: 'yes'" in config_yaml(task)


@pytest.mark.slow
def test_dropout_per_layer_on_the_inputs_and_hidden_noise_stack_and_match_their_runs_alone(tmp_path):
    grid = {
        "model.dropout": ["[0.5,0.3]", "[0.0,0.2]"],
        "model.input_dropout": ["0.0", "0.2"],
        "regularization.hidden_noise": ["0.0", "0.3"],
    }
    common = [*SHORT, "trainer.epochs=3", "trainer.seed=0"]
    sweep, out = sweep_of(tmp_path, grid, common)
    assert "8 runs as one stack" in out.stdout and "cannot share one stack" not in out.stdout, out.stdout[-2000:]
    same_as_alone(tmp_path, sweep, grid, common, rel=0)


def test_a_residual_mlp_trains_alone_and_says_why(tmp_path):
    sweep = tmp_path / "sweep"
    out = nnlab(
        "train",
        "-m",
        *SHORT,
        "trainer.epochs=1",
        "model.residual=true",
        "trainer.seed=0,1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0 and out.stdout.count("(alone: model.residual") == 2, out.stdout[-2000:]
