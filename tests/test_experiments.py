"""Every lecture experiment (conf/experiment/) runs as a sweep, in a shortened form where that keeps
its point, and shows the outcome its config's comment promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import nnlab

pytestmark = pytest.mark.slow  # the lecture experiments, shortened: make test-all (CI) runs them

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "src/nnlab/conf/experiment").glob("*.yaml"))


def sweep(
    tmp_path: Path, experiment: str, *overrides: str, env: dict | None = None, seeds: str = "0"
) -> dict[str, dict]:
    """Run `nnlab train -m experiment=NAME` (one seed unless `seeds`: the experiments' own default is five);
    summaries keyed by the swept values (folder names)."""
    out = nnlab(
        "train",
        "-m",
        f"experiment={experiment}",
        "trainer.progress=false",
        f"trainer.seed={seeds}",
        *overrides,
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path.parent,
        timeout=900,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = {}
    for summary in [
        *tmp_path.glob("*/summary.json"),
        *tmp_path.glob("summary.json"),
    ]:  # (one job, nothing swept: the sweep folder)
        fixed = {f"experiment={experiment}", f"trainer.seed={seeds}", *overrides}  # what every run shares
        key = ",".join(part for part in summary.parent.name.split(",") if part not in fixed)
        runs[key] = json.loads(summary.read_text())
    return runs


def test_every_experiment_has_a_test():
    tested = {name[len("test_") :] for name in globals() if name.startswith("test_") and name[5:] in EXPERIMENTS}
    assert tested == set(EXPERIMENTS) and len(EXPERIMENTS) == 20


def acc(run):
    return run["metrics"].get("acc/test", 0.0)


def alarms(run):
    return {a["name"] for a in run["alarms"]}


def bands(sweep_dir: Path) -> dict[str, dict]:
    """The sweep's report_settings.csv (written by its closing summary): setting -> mean, CI, verdict."""
    import csv

    with open(sweep_dir / "report_settings.csv") as f:
        return {row["setting"]: row for row in csv.DictReader(f)}


def ci(band: dict, metric: str = "acc/test") -> tuple[float, float]:
    return float(band[f"{metric} ci95 low"]), float(band[f"{metric} ci95 high"])


def test_activations(tmp_path):
    """On bands over 3 seeds: sigmoid's test accuracy interval lies at chance, tanh's and ReLU's above 0.9."""
    runs = sweep(tmp_path, "activations", "activation=sigmoid,tanh,relu", "trainer.epochs=20", seeds="0,1,2")
    assert len(runs) == 9
    b = bands(tmp_path)
    for name in ("tanh", "relu"):
        assert ci(b[f"activation={name}"])[0] > 0.9, b[f"activation={name}"]
    low, high = ci(b["activation=sigmoid"])
    assert 0.35 < low and high < 0.65 and b["activation=sigmoid"]["verdict"] == "worse"
    assert float(b["activation=sigmoid"]["loss/train mean"]) > 3 * float(b["activation=relu"]["loss/train mean"])


def test_dying_relu(tmp_path, mnist_root):
    """Note 001: at a high rate ReLU units die (below zero for every input, passing no gradient back: the
    dead_units alarm); leaky ReLU and ELU units sit below zero as often yet none is stuck."""
    runs = sweep(tmp_path, "dying_relu", seeds="0,1", env={"NNLAB_DATA_DIR": str(mnist_root)})
    assert len(runs) == 6
    for key, run in runs.items():
        rows = [json.loads(line) for line in (tmp_path / key).joinpath("metrics.jsonl").read_text().splitlines()]
        last = {k: v for r in rows for k, v in r.items() if k.endswith("_frac/layer1")}
        if key.startswith("activation=relu,"):
            assert last["stats/no_grad_frac/layer1"] > 0.3 and "dead_units" in alarms(run), (key, last)
        else:
            assert last["stats/dead_frac/layer1"] > 0.2 and last["stats/no_grad_frac/layer1"] < 0.1, (key, last)
            assert "dead_units" not in alarms(run)


def test_batch_modes(tmp_path):
    """Online (1), mini-batch (32) and full-batch gradient descent, shortened: a full-batch run takes one step
    per epoch, an online run one per example; online at the largest rate diverges; per epoch online learning
    gets furthest, and `nnlab report --to` says in how many epochs and seconds."""
    runs = sweep(tmp_path, "batch_modes", "data.source.n_train=200", "trainer.epochs=6")
    assert len(runs) == 9
    steps = {k: r["steps"] for k, r in runs.items() if r["status"] == "ok"}
    assert (
        steps["optimizer.lr=0.1,trainer.batch_size=full"] == 6 and steps["optimizer.lr=0.1,trainer.batch_size=1"] == 960
    )
    assert runs["optimizer.lr=1,trainer.batch_size=1"]["status"] == "diverged"
    online, full = (runs[f"optimizer.lr=0.01,trainer.batch_size={b}"]["metrics"]["loss/val"] for b in ("1", "full"))
    assert online < full
    out = nnlab("report", str(tmp_path), "--to", "loss/val=0.3", cwd=tmp_path)
    assert out.returncode == 0 and "epochs to loss/val<=0.3" in out.stdout, out.stdout[-2000:]


def test_target_scaling(tmp_path):
    """A target of ~1000 unscaled explodes the updates; standardized or min-max it fits, measured and
    predicted in the target's own units."""
    import nnlab as lib

    runs = sweep(tmp_path, "target_scaling")
    assert runs["data.target_scaling=none"]["status"] == "diverged"
    for how in ("standardize", "minmax"):
        run = runs[f"data.target_scaling={how}"]
        assert run["status"] == "ok" and run["metrics"]["r2/test"] > 0.6, (how, run["metrics"])
        assert run["metrics"]["mse/test"] > 100 * run["metrics"]["loss/test"]  # mse in the target's units, loss scaled
    model = lib.load_run(tmp_path / "data.target_scaling=standardize")
    x = torch.linspace(-3, 3, 50)[:, None]
    truth = ((torch.sin(x) + 0.1 * x**2 - 0.5) * 100 + 1000).squeeze(1)
    assert (model.predict(x) - truth).abs().mean() < 50  # ~1000-unit targets, predicted within a few percent


def test_initialization(tmp_path):
    """On bands over 3 seeds: zero init's accuracy interval lies at chance, He's and Xavier's above 0.9."""
    runs = sweep(tmp_path, "initialization", seeds="0,1,2")
    assert len(runs) == 15
    b = bands(tmp_path)
    for scheme in ("zeros", "normal_small"):  # a coin flip, whatever the seed
        low, high = ci(b[f"init={scheme}"])
        assert 0.4 < low and high < 0.6 and b[f"init={scheme}"]["verdict"] == "worse", b[f"init={scheme}"]
    assert ci(b["init=he_normal"])[0] > 0.9 and ci(b["init=xavier_normal"])[0] > 0.9
    assert all("flat_loss" in alarms(r) for k, r in runs.items() if k.startswith("init=zeros,"))
    assert all("saturation" in alarms(r) for k, r in runs.items() if k.startswith("init=normal_large,"))


def test_learning_rate(tmp_path):
    """Note 001's four curves: 1e-4 decays almost linearly (too low), 0.1 and 1 drop fast then slowly (good),
    100 explodes (far too high); each in summary.json's loss_curve, the report's column and an alarm."""
    runs = sweep(tmp_path, "learning_rate")
    assert runs["optimizer.lr=100.0"]["status"] == "diverged"
    shapes = {k: r["loss_curve"] for k, r in runs.items()}
    assert shapes["optimizer.lr=0.0001"] == shapes["optimizer.lr=0.001"] == "too_low", shapes
    assert shapes["optimizer.lr=0.1"] == shapes["optimizer.lr=1.0"] == "good", shapes
    assert shapes["optimizer.lr=100.0"] == "far_too_high" and "loss_curve" in alarms(runs["optimizer.lr=0.0001"])
    assert "| too_low |" in (tmp_path / "report.md").read_text()
    assert "update_ratio" in alarms(runs["optimizer.lr=0.0001"])
    assert (
        acc(runs["optimizer.lr=0.1"]) > 0.95 and acc(runs["optimizer.lr=0.1"]) > acc(runs["optimizer.lr=0.001"]) + 0.05
    )


def test_optimizers(tmp_path):
    runs = sweep(tmp_path, "optimizers", "optimizer=sgd,momentum,nesterov,adagrad")
    loss = {k.split("=")[1]: v["metrics"]["loss/train"] for k, v in runs.items()}
    assert (
        loss["momentum"] < 0.5 * loss["sgd"]
        and loss["nesterov"] < 0.5 * loss["sgd"]
        and loss["adagrad"] < 0.5 * loss["sgd"]
    )


def test_batch_size(tmp_path):
    runs = sweep(tmp_path, "batch_size")
    small = acc(runs["optimizer.lr=0.1,trainer.batch_size=32"])
    same_rate = acc(runs["optimizer.lr=0.1,trainer.batch_size=128"])
    scaled = acc(runs["optimizer.lr=0.4,trainer.batch_size=128"])
    assert scaled > same_rate + 0.2 and scaled > small - 0.08


def test_depth(tmp_path):
    runs = sweep(tmp_path, "depth", "trainer.epochs=8")
    plain_sigmoid = runs["activation=sigmoid,model.batch_norm=False"]
    assert "vanishing_gradients" in alarms(plain_sigmoid) and acc(plain_sigmoid) < 0.6
    assert acc(runs["activation=relu,model.batch_norm=False"]) > 0.9
    assert acc(runs["activation=sigmoid,model.batch_norm=True"]) > acc(plain_sigmoid) + 0.2


def test_regularization(tmp_path):
    runs = sweep(tmp_path, "regularization", "model.dropout=0.0")
    plain, l2 = runs["optimizer.weight_decay=0.0"], runs["optimizer.weight_decay=0.01"]
    assert plain["metrics"]["acc/train"] == 1.0
    assert plain["metrics"]["loss/val"] > 2 * l2["metrics"]["loss/val"] and acc(l2) > acc(plain) + 0.05


def test_clipping(tmp_path):
    runs = sweep(tmp_path, "clipping", "trainer.epochs=5")
    assert runs["regularization.clip_grad_norm=null"]["status"] == "diverged"
    clipped = runs["regularization.clip_grad_norm=1.0"]
    assert clipped["status"] == "ok" and acc(clipped) > 0.85


def test_preprocessing(tmp_path):
    runs = sweep(tmp_path, "preprocessing")
    none, center, standard = (acc(runs[f"data.preprocess={p}"]) for p in ("none", "center", "standardize"))
    assert none < center < standard and standard > 0.95 and standard - none > 0.15
    assert "saturation" in alarms(runs["data.preprocess=none"])
    assert acc(runs["data.preprocess=whiten"]) > 0.95 and acc(runs["data.preprocess=pca"]) < standard


def test_self_normalizing(tmp_path):
    runs = sweep(tmp_path, "self_normalizing", "trainer.epochs=5", "data.source.n_train=400")
    assert len(runs) == 3
    first = {}
    for name in ("selu", "relu", "tanh"):
        run = next(tmp_path.glob(f"activation={name}*"))
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        first[name] = next(r for r in rows if "stats/act_std/layer12" in r)  # at initialization (step 0)
    assert 0.7 < first["selu"]["stats/act_std/layer12"] < 1.4 and abs(first["selu"]["stats/act_mean/layer12"]) < 0.3
    assert first["relu"]["stats/act_std/layer12"] < 0.2 and first["tanh"]["stats/act_std/layer12"] < 0.5
    assert acc(runs["activation=selu"]) > 0.8


def test_transfer(tmp_path, mnist_root):
    """Pretrain on digits 0-4 (shortened), then the experiment's sweep on 100 examples of digits 5-9; and
    the control: features pretrained on digits 5-9 themselves."""
    import torch

    def pretrain(name, digits):
        out = nnlab(
            "train",
            "data=mnist",
            f"data.source.keep_classes={digits}",
            "model.hidden=[256,128]",
            "data.subset=6000",
            "trainer.epochs=2",
            "trainer.batch_size=64",
            "trainer.progress=false",
            f"hydra.run.dir={tmp_path / name}",
            cwd=tmp_path,
            env={"NNLAB_DATA_DIR": str(mnist_root)},
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return tmp_path / name

    def transfer(name, pretrained):
        (tmp_path / name).mkdir()
        (tmp_path / f"pre_{name}").symlink_to(pretrained)  # beside the sweep (its working directory), a path
        runs = sweep(
            tmp_path / name,
            "transfer",
            f"transfer.init_from=pre_{name}",
            "trainer.epochs=15",  # without "/"
            env={"NNLAB_DATA_DIR": str(mnist_root)},
        )
        return {
            m: acc(runs[f"transfer.mode={m}"])
            for m in ("none", "feature_extraction", "fine_tune", "freeze_then_fine_tune")
        }

    lower = pretrain("pre_0-4", "[0,1,2,3,4]")
    result = transfer("sweep", lower)
    # dense features of digits 0-4 are too specific for 5-9: negative transfer, least when fine-tuned
    assert result["none"] > result["fine_tune"] > result["feature_extraction"], result
    control = transfer("control", pretrain("pre_5-9", "[5,6,7,8,9]"))
    assert all(control[m] > control["none"] + 0.05 for m in control if m != "none"), control

    source = torch.load(lower / "checkpoints" / "best.pt", weights_only=True)["model"]
    after = {
        m: torch.load(
            next((tmp_path / "sweep").glob(f"*transfer.mode={m}*")) / "checkpoints" / "last.pt", weights_only=True
        )
        for m in ("feature_extraction", "fine_tune")
    }
    hidden = [k for k in source if not k.startswith("head.")]
    assert all(torch.equal(after["feature_extraction"]["model"][k], source[k]) for k in hidden)  # frozen
    assert not all(torch.equal(after["fine_tune"]["model"][k], source[k]) for k in hidden)  # tuned, slowly:
    assert [g["lr"] for g in after["fine_tune"]["optimizer"]["param_groups"]] == pytest.approx([1e-3, 1e-4])


def test_regression(tmp_path):
    """Huber beats MSE on the clean test set when 10% of the training targets are outliers."""
    runs = sweep(tmp_path, "regression", "trainer.epochs=20")
    mse, huber = runs["loss=mse"]["metrics"], runs["loss=huber"]["metrics"]
    assert huber["mse/test"] < 0.5 * mse["mse/test"] and huber["r2/test"] > 0.8 > mse["r2/test"]


def test_pretraining(tmp_path, mnist_root):
    """The deep sigmoid net: end to end it stays at chance with vanishing gradients; pretrained, it learns."""
    runs = sweep(tmp_path, "pretraining", env={"NNLAB_DATA_DIR": str(mnist_root)})
    none, sup, ae = (runs[f"pretrain.method={m}"] for m in ("none", "supervised", "autoencoder"))
    assert acc(none) < 0.2 and "vanishing_gradients" in alarms(none)
    assert acc(sup) > 0.85 and acc(ae) > acc(none) + 0.3
    assert [s["stage"] for s in ae["pretrain"]["stages"]][-1] == "head"


def test_scarce_labels(tmp_path, mnist_root):
    """500 labels: the autoencoders alone leave the deep sigmoid net at chance; with 20,000 unlabeled images
    to learn from, the same 500 labels take it far above."""
    runs = sweep(tmp_path, "scarce_labels", "pretrain.unlabeled=0,20000", env={"NNLAB_DATA_DIR": str(mnist_root)})
    alone, helped = runs["pretrain.unlabeled=0"], runs["pretrain.unlabeled=20000"]
    assert acc(alone) < 0.2 and acc(helped) > acc(alone) + 0.4, (acc(alone), acc(helped))


def test_landscape(tmp_path):
    """Shortened (3 rates x 2 decays x 2 seeds, 3 epochs): one light stack, its landscape and its advice."""
    runs = sweep(
        tmp_path,
        "landscape",
        "optimizer.lr=0.001,0.1,10",
        "optimizer.weight_decay=1e-06,0.01",
        "trainer.epochs=3",
        seeds="0,1",
    )
    assert len(runs) == 12 and all(r["status"] == "diverged" for k, r in runs.items() if "optimizer.lr=10," in k)
    assert (tmp_path / "report_map.png").is_file() and "next: nnlab train -m" in (tmp_path / "report.md").read_text()
    log = next(tmp_path.glob("*trainer.seed=1*")).joinpath("train.log").read_text()
    assert "sweep.light: one of a stack of 12" in log


def _keras_protocol(run: dict, config: dict) -> None:
    """All 60,000 training images, no validation split, the last epoch's model tested, Glorot gain 1, x / 255."""
    assert run["monitor"] == "last" and run["best_epoch"] == run["epochs_run"] and run["status"] == "ok"
    assert not any(k.endswith("/val") for k in run["metrics"])
    assert (
        config["data"]["val_fraction"] == 0.0
        and config["data"]["preprocess"] == "none"
        and config["init"]["gain"] == 1.0
    )
    assert config["trainer"]["batch_size"] == 128 and config["early_stopping"]["metric"] == "last"


def test_keras_mnist_mlp(tmp_path, mnist_root):
    """Keras's mnist_mlp (published 98.40%): shortened to 2 epochs on 6,000 images here (the README has the full run)."""
    import yaml

    runs = sweep(
        tmp_path, "keras_mnist_mlp", "data.subset=6000", "trainer.epochs=2", env={"NNLAB_DATA_DIR": str(mnist_root)}
    )
    (run,) = runs.values()
    config = yaml.safe_load((Path(run["run_dir"]) / "config.yaml").read_text())
    _keras_protocol(run, config)
    assert config["model"]["hidden"] == [512, 512] and config["model"]["dropout"] == 0.2 and run["epochs_run"] == 2
    assert config["optimizer"]["_target_"] == "torch.optim.RMSprop" and config["optimizer"]["alpha"] == 0.9
    assert config["optimizer"]["eps"] == 1e-7 and config["optimizer"]["lr"] == 0.001
    assert acc(run) > 0.9


def test_keras_mnist_cnn(tmp_path, mnist_root):
    """Keras's mnist_cnn (published 99.25%): shortened to 1 epoch on 3,000 images here."""
    import yaml

    runs = sweep(
        tmp_path, "keras_mnist_cnn", "data.subset=3000", "trainer.epochs=1", env={"NNLAB_DATA_DIR": str(mnist_root)}
    )
    (run,) = runs.values()
    config = yaml.safe_load((Path(run["run_dir"]) / "config.yaml").read_text())
    _keras_protocol(run, config)
    assert (
        config["model"]["dropout"] == 0.25
        and config["model"]["dense_dropout"] == 0.5
        and config["model"]["padding"] == "valid"
    )
    assert config["optimizer"]["_target_"] == "torch.optim.Adadelta" and config["optimizer"]["rho"] == 0.95
    assert acc(run) > 0.8
