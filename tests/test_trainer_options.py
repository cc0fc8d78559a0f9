"""The trainer, regularization and early-stopping knobs, each end to end through the CLI."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY, events, metrics, nnlab, summary, train


def test_bf16_autocast_on_cpu(tmp_path):
    run, _ = train(tmp_path, *TINY, "trainer.precision=bf16", "trainer.device=cpu")
    assert summary(run)["status"] == "ok" and summary(run)["device"] == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_fp16_needs_cuda(tmp_path):
    out = nnlab("train", *TINY, "trainer.precision=fp16", cwd=tmp_path)
    assert out.returncode == 2 and "fp16 autocast needs a CUDA device" in out.stderr


@pytest.mark.slow
def test_torch_compile(tmp_path):
    run, _ = train(tmp_path, *TINY, "trainer.compile=true", "trainer.epochs=1")
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state["model"])  # saved unwrapped: loads into a plain model


def test_deterministic_records_what_it_changed(tmp_path):
    run, out = train(tmp_path, *TINY, "trainer.deterministic=true")
    assert "trainer.deterministic changed: torch.use_deterministic_algorithms(True)" in out.stdout
    notes = [t.tensor_proto.string_val[0].decode() for t in events(run).Tensors("notes/text_summary")]
    assert any("use_deterministic_algorithms(True)" in n for n in notes)


def test_eval_every_and_log_every(tmp_path):
    run, _ = train(tmp_path, *TINY, "trainer.epochs=4", "trainer.eval_every=2", "trainer.log_every=3")
    rows = metrics(run)
    assert [r["epoch"] for r in rows if "loss/val" in r] == [2, 4]
    assert [r["step"] for r in rows if "step/lr" in r] == list(range(3, summary(run)["steps"] + 1, 3))


def test_early_stopping_stops_and_keeps_the_best(tmp_path):
    run, _ = train(
        tmp_path,
        "data.source.n_train=160",
        "trainer.progress=false",
        "trainer.epochs=50",
        "early_stopping.patience=2",
        "early_stopping.min_delta=0.5",
    )
    s = summary(run)
    assert s["stopped_early"] and s["epochs_run"] == 3 and s["best_epoch"] == 1


def test_the_whole_training_set_with_the_last_epoch_tested_and_what_needs_a_validation_split_refused(tmp_path):
    """data.val_fraction=0 with early_stopping.metric=last: all training data, the last epoch's model is `best`."""
    run, out = train(tmp_path, *TINY, "trainer.epochs=3", "data.val_fraction=0", "early_stopping.metric=last")
    s = summary(run)
    assert s["monitor"] == "last" and s["best_epoch"] == s["epochs_run"] == 3 and not s["stopped_early"]
    assert not any(k.endswith("/val") for k in s["metrics"]) and "data 160 train / 80 test" in out.stdout  # no val
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])  # the model tested: the last
    assert "last epoch" in out.stdout  # the closing table says what acc/test measured
    for args, words in (
        (["data.val_fraction=0"], "early_stopping.metric=last"),
        (["early_stopping.metric=last", "early_stopping.patience=3"], "watches no metric"),
        (["data.val_fraction=0", "early_stopping.metric=last", "schedule=plateau"], "validation loss"),
    ):
        refused = nnlab("train", *TINY, *args, cwd=tmp_path)
        assert refused.returncode == 2 and words in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, (
            refused.stderr
        )


def test_the_cnn_has_a_dropout_rate_after_its_convolutions_and_one_after_its_dense_layers():
    from nnlab.nn.cnn import CNN

    rates = lambda m: [d.p for d in m.modules() if type(d).__name__ == "Dropout"]  # noqa: E731
    assert rates(CNN((1, 28, 28), 10, padding="valid", pool_every=2, dropout=0.25, dense_dropout=0.5)) == [0.25, 0.5]
    assert rates(CNN((1, 28, 28), 10, dropout=0.25, hidden=(64, 32))) == [0.25, 0.25, 0.25]  # null: the same


@pytest.mark.slow
def test_regularizers_change_the_run(tmp_path):
    base, _ = train(tmp_path, *TINY, run_dir="base")
    for knob in (
        "regularization.l1=0.01",
        "regularization.input_noise=0.3",
        "regularization.clip_grad_value=0.01",
        "regularization.clip_grad_norm=0.01",
        "optimizer.weight_decay=0.1",
        "model.dropout=0.3",
    ):
        run, _ = train(tmp_path, *TINY, knob, run_dir=knob.replace("=", "_"))
        assert summary(run)["status"] == "ok"
        assert summary(run)["metrics"]["loss/train"] != summary(base)["metrics"]["loss/train"], knob
    clipped = metrics(tmp_path / "regularization.clip_grad_norm_0.01")
    assert all(r["step/grad_norm"] > 0 for r in clipped if "step/grad_norm" in r)


def test_every_schedule_trains(tmp_path):
    sweep = tmp_path / "s"
    out = nnlab(
        "train",
        "-m",
        *TINY,
        "schedule=step,multistep,exponential,cosine,warmup_cosine,onecycle,cyclic,plateau",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    runs = list(sweep.glob("*/summary.json"))
    assert len(runs) == 8


def test_grid_syntax_range_and_choice(tmp_path):
    sweep = tmp_path / "s"
    out = nnlab(
        "train",
        "-m",
        *TINY,
        "trainer.epochs=1",
        "trainer.seed=range(0,2)",
        "optimizer=choice(sgd,adam)",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list(sweep.glob("*/summary.json"))) == 4


def test_channels_last_for_conv_nets_gives_the_same_training(tmp_path, cifar_root):
    """NHWC is a memory layout, not a different network: same initial loss, same trajectory within
    floating-point reordering; the saved weights load into a plain NCHW model."""
    common = [
        "data=cifar10",
        f"data.source.root={cifar_root}",
        "data.source.download=false",
        "model=cnn_classic",
        "trainer.epochs=2",
        "trainer.batch_size=16",
        "trainer.progress=false",
        "model.dropout=0",
        "optimizer=sgd",
        "optimizer.lr=0.01",
    ]
    nhwc, _ = train(tmp_path, *common, run_dir="nhwc")
    nchw, _ = train(tmp_path, *common, "trainer.channels_last=false", run_dir="nchw")
    a, b = metrics(nhwc), metrics(nchw)
    assert a[0]["start/loss"] == pytest.approx(b[0]["start/loss"], rel=1e-5)
    for key in ("loss/train", "loss/test"):
        assert summary(nhwc)["metrics"][key] == pytest.approx(summary(nchw)["metrics"][key], rel=1e-3)
    state = torch.load(nhwc / "checkpoints" / "last.pt", weights_only=True)["model"]
    conv = next(v for k, v in state.items() if v.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    from nnlab.nn.cnn import CNN

    plain = CNN((3, 32, 32), 10, padding="valid", pool_every=2, dropout=0)
    plain.load_state_dict(state)  # an NCHW model takes NHWC weights


def test_cpu_threads(tmp_path):
    run, _ = train(tmp_path, *TINY)
    assert summary(run)["torch_threads"] == 1  # a toy set: one thread
    run, _ = train(tmp_path, *TINY, "trainer.threads=2", run_dir="two")
    assert summary(run)["torch_threads"] == 2  # asked for
    assert nnlab("train", *TINY, "trainer.threads=0", cwd=tmp_path).returncode == 2
