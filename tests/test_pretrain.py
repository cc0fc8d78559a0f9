"""Greedy layer-wise pretraining: one layer at a time with the earlier ones fixed, labels unused by the
autoencoder stages, logged and summarized, refused where it is not defined."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import TINY, events, nnlab, summary, train
from nnlab.nn.mlp import MLP
from nnlab.training.pretrain import pretrain


def toy_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 4, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()
    torch.manual_seed(seed)
    return MLP((4,), 2, nn.Sigmoid, hidden=[16, 12, 8]), x, y


def weights(model):
    return [b[0].weight.detach().clone() for b in model.hidden] + [model.head.weight.detach().clone()]


@pytest.mark.parametrize("method", ["supervised", "autoencoder"])
def test_one_layer_at_a_time_with_the_earlier_ones_fixed(method):
    model, x, y = toy_problem()
    snapshots = [weights(model)]

    def log(stage, losses):
        assert len(losses) == 2 and all(v == v for v in losses)
        snapshots.append(weights(model))

    make = lambda params: torch.optim.Adam(params, lr=1e-2)  # noqa: E731
    stages = pretrain(model, method, x, y, nn.CrossEntropyLoss(), 2, 32, make, 0, log)
    names = ["layer1", "layer2", "layer3"] + (["head"] if method == "autoencoder" else [])
    assert [s["stage"] for s in stages] == names and len(snapshots) == len(names) + 1
    for k in range(3):  # stage k+1 trains hidden layer k+1; the layers before it are bit-identical
        before, after = snapshots[k], snapshots[k + 1]
        assert all(torch.equal(before[j], after[j]) for j in range(k)), f"stage {k + 1} moved an earlier layer"
        assert not torch.equal(before[k], after[k]), f"stage {k + 1} did not train its layer"
        assert all(torch.equal(before[j], after[j]) for j in range(k + 1, 3)), f"stage {k + 1} moved a later layer"
    head_moved = [not torch.equal(a[3], b[3]) for a, b in zip(snapshots, snapshots[1:])]
    # supervised: the network's own head is the last stage's output layer; autoencoder: only the head stage trains it
    assert head_moved == ([False, False, True] if method == "supervised" else [False, False, False, True])
    if method == "autoencoder":  # and the last stage keeps every hidden layer fixed
        assert all(torch.equal(snapshots[-2][j], snapshots[-1][j]) for j in range(3))


def test_autoencoders_do_not_read_the_labels():
    runs = []
    for labels in ("true", "shuffled"):
        model, x, y = toy_problem()
        if labels == "shuffled":
            y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
        make = lambda params: torch.optim.SGD(params, lr=0.1)  # noqa: E731
        pretrain(model, "autoencoder", x, y, nn.CrossEntropyLoss(), 2, 32, make, 0, lambda *a: None)
        runs.append(weights(model))
    assert all(torch.equal(a, b) for a, b in zip(runs[0][:3], runs[1][:3]))  # every hidden layer: the same
    assert not torch.equal(runs[0][3], runs[1][3])  # the supervised head: not


def test_autoencoders_learn_from_unlabeled_examples_and_the_head_from_the_labelled_ones():
    """pretrain.unlabeled: the hidden layers see the extra inputs (other weights than without them), the
    head's stage only the labelled ones (its loss is over those)."""
    runs = []
    for extra in (None, torch.randn(200, 4, generator=torch.Generator().manual_seed(3))):
        model, x, y = toy_problem()
        make = lambda params: torch.optim.SGD(params, lr=0.1)  # noqa: E731
        stages = pretrain(model, "autoencoder", x, y, nn.CrossEntropyLoss(), 2, 32, make, 0, lambda *a: None, extra)
        runs.append((weights(model), stages))
    assert not torch.equal(runs[0][0][0], runs[1][0][0])
    assert runs[0][1][-1]["stage"] == runs[1][1][-1]["stage"] == "head"


def test_a_run_with_unlabeled_examples_pretrains_on_them(tmp_path):
    run, proc = train(
        tmp_path,
        *TINY,
        "pretrain.method=autoencoder",
        "pretrain.epochs=1",
        "model.hidden=[8]",
        "data.subset=20",
        "pretrain.unlabeled=50",
    )
    assert summary(run)["status"] == "ok" and "pretrain (autoencoder) layer1" in proc.stdout


def test_a_pretrained_run_logs_its_stages(tmp_path):
    run, proc = train(tmp_path, *TINY, "pretrain.method=supervised", "pretrain.epochs=2", "model.hidden=[16,16]")
    pre = summary(run)["pretrain"]
    assert pre["method"] == "supervised" and [s["stage"] for s in pre["stages"]] == ["layer1", "layer2"]
    assert "pretrain (supervised) layer2" in proc.stdout
    tags = set(events(run).Tags()["scalars"])
    assert {"pretrain/layer1_loss", "pretrain/layer2_loss", "loss/val"} <= tags
    assert "initial_loss" not in {a["name"] for a in summary(run)["alarms"]}  # the loss starts low on purpose


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["pretrain.method=greedy"], "pretrain.method"),
        (["pretrain.method=supervised", "pretrain.epochs=0"], "pretrain.epochs"),
        (["pretrain.method=supervised", "model.hidden=[]"], "model=mlp with at least one hidden layer"),
        (["pretrain.method=autoencoder", "model=cnn", "data=mnist"], "model=mlp"),
        (["pretrain.method=supervised", "data.subset=20", "pretrain.unlabeled=50"], "pretrain.unlabeled=50 is invalid"),
        (["pretrain.method=autoencoder", "pretrain.unlabeled=50"], "after the labelled data.subset"),
        (["pretrain.method=autoencoder", "data.subset=20", "pretrain.unlabeled=-1"], "pretrain.unlabeled"),
    ],
)
def test_where_pretraining_is_not_defined_is_one_paragraph(tmp_path, overrides, message):
    out = nnlab("train", *overrides, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
