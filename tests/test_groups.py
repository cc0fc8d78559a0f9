"""Every option of every config group composes, validates, builds, and trains one step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from nnlab.cli.command_line import compose
from nnlab.config.validate import validate
from nnlab.data.toy import REGRESSION
from nnlab.training.diagnostics import weight_layers
from nnlab.training.setup import setup
from nnlab.training.steps import train_step

CONF = Path(__file__).resolve().parents[1] / "src" / "nnlab" / "conf"
SWEEP_GROUPS = {"experiment", "hparams_search"}  # whole sweeps, tested in test_experiments.py / test_sweeps.py
GROUPS = {
    g.name: sorted(p.stem for p in g.glob("*.yaml"))
    for g in sorted(CONF.iterdir())
    if g.is_dir() and list(g.glob("*.yaml")) and g.name not in SWEEP_GROUPS
}
TOY = [
    "data.source.n_train=64",
    "data.source.n_test=32",
    "trainer.batch_size=16",
    "trainer.epochs=2",
    "trainer.device=cpu",
]


def compose_cfg(overrides):
    return compose(overrides)


def overrides_for(group, option, mnist_root, cifar_root):
    extra = TOY
    if group == "data" and option == "mnist":
        extra = [f"data.source.root={mnist_root}", "data.subset=64", "trainer.batch_size=16", "trainer.device=cpu"]
    if group == "data" and option in REGRESSION:
        extra = [*TOY, "loss=mse"]
    if (group == "data" and option == "cifar10") or (group == "model" and option != "mlp"):
        extra = [
            "data=cifar10",
            f"data.source.root={cifar_root}",
            "data.source.download=false",
            "trainer.batch_size=16",
            "trainer.device=cpu",
        ]
    return [f"{group}={option}", *extra]


@pytest.fixture(scope="module")
def roots(request, tmp_path_factory):
    from conftest import SHARED_DATA, write_tiny_cifar10

    mnist = SHARED_DATA if (SHARED_DATA / "MNIST" / "raw").exists() else None
    return mnist, write_tiny_cifar10(tmp_path_factory.mktemp("cifar"))


def test_the_groups_are_the_ones_the_readme_lists():
    assert set(GROUPS) == {"activation", "data", "init", "loss", "model", "optimizer", "schedule"}
    assert len(GROUPS["activation"]) == 12 and len(GROUPS["init"]) == 10 and len(GROUPS["optimizer"]) == 10
    assert len(GROUPS["schedule"]) == 9 and len(GROUPS["data"]) == 10


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_builds_and_trains_a_step(group, option, roots):
    mnist_root, cifar_root = roots
    if group == "data" and option == "mnist" and mnist_root is None:
        pytest.skip("no MNIST here")
    cfg = compose_cfg(overrides_for(group, option, mnist_root, cifar_root))
    validate(cfg)
    exp = setup(cfg)
    x, y = exp.data.train.x[:16], exp.data.train.y[:16]
    layers = weight_layers(exp.model)
    before = [m.weight.detach().clone() for _, m in layers]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    out, loss, norm = train_step(exp, x, y, scaler)
    assert out.shape[0] == 16 and math.isfinite(loss.item()) and math.isfinite(norm.item())
    if not (group == "init" and option == "zeros"):  # zero init: hidden weights get no gradient, by design
        assert any(not torch.equal(b, m.weight) for b, (_, m) in zip(before, layers)), "a step changed nothing"


def test_each_hidden_layer_gets_its_own_activation_instance():
    cfg = compose_cfg(["activation=prelu", *TOY])
    exp = setup(cfg)
    prelus = [m for m in exp.model.modules() if isinstance(m, torch.nn.PReLU)]
    assert len(prelus) == 2 and prelus[0].weight is not prelus[1].weight


def test_maxout_widens_the_layer_before_it():
    exp = setup(compose_cfg(["activation=maxout", "activation.k=3", "model.hidden=[8,4]", *TOY]))
    linears = [m for m in exp.model.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [24, 12, 2]
    assert exp.model(exp.data.train.x[:5]).shape == (5, 2)


def test_batch_norm_and_dropout_are_in_the_mlp():
    exp = setup(compose_cfg(["model.batch_norm=true", "model.dropout=0.5", *TOY]))
    kinds = [type(m).__name__ for m in exp.model.hidden[0]]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"]  # batch norm before the activation


def test_dropout_per_hidden_layer_and_on_the_inputs():
    """Notes 003/004: ~0.2 on the inputs, ~0.5 on hidden layers: one rate each, a layer at 0 has none."""
    exp = setup(
        compose_cfg(["model.hidden=[16,16,16]", "model.dropout=[0.5,0.0,0.3]", "model.input_dropout=0.2", *TOY])
    )
    rates = [next((m.p for m in block if type(m).__name__ == "Dropout"), None) for block in exp.model.hidden]
    assert rates == [0.5, None, 0.3] and exp.model.input_drop.p == 0.2
    x = torch.ones(64, 2)
    exp.model.train()
    assert (exp.model.input_drop(x) == 0).any() and exp.model(x).shape == (64, 2)
    exp.model.eval()
    assert torch.equal(exp.model.input_drop(x), x)  # off in evaluation


def test_hidden_noise_is_added_to_each_hidden_layer_while_training_only():
    """Note 004: Gaussian noise between hidden layers (regularization.hidden_noise), after each layer's dropout."""
    exp = setup(compose_cfg(["regularization.hidden_noise=0.5", "model.dropout=[0.2,0.0]", *TOY]))
    last = [block[-1] for block in exp.model.hidden]
    assert [(type(m).__name__, m.p, m.noise) for m in last] == [("Dropout", 0.2, 0.5), ("Dropout", 0.0, 0.5)]
    x = exp.data.train.x[:32]
    exp.model.train()
    assert not torch.equal(exp.model(x), exp.model(x))  # a fresh draw each pass
    exp.model.eval()
    assert torch.equal(exp.model(x), exp.model(x))  # none in evaluation


def test_a_residual_mlp_adds_each_equal_width_layers_input_to_its_output():
    """Note 003: skip connections for deep nets (model.residual): h + layer(h) where the widths agree."""
    exp = setup(compose_cfg(["model.residual=true", "model.hidden=[8,8,4]", *TOY]))
    model = exp.model
    assert model.skips == [False, True, False]  # 2 -> 8 and 8 -> 4 cannot add their input
    x = exp.data.train.x[:16]
    model.eval()
    h1 = model.hidden[0](x)
    expected = model.head(model.hidden[2](h1 + model.hidden[1](h1)))
    assert torch.allclose(model(x), expected)
