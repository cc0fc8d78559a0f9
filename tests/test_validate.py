"""validate(): the choices read from signatures (Literal), finite numbers, unknown keys, the transfer node,
and load_run_config(): a config read from disk passes the same checks as a command line."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from nnlab.cli.command_line import compose
from nnlab.config.validate import load_run_config, validate
from nnlab.errors import ConfigError

TOY = ["data.source.n_train=64", "data.source.n_test=32"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model.dropout_kind=gaussian"],
            "model.dropout_kind='gaussian' is invalid: choose one of auto, standard, alpha",
        ),
        (["model=cnn", "model.padding=full"], "model.padding='full' is invalid: choose one of same, valid"),
        (["model=cnn", "model.pool=min"], "model.pool='min' is invalid: choose one of max, avg, none"),
        (
            ["data=sine", "loss=mse", "loss.output=relu"],
            "loss.output='relu' is invalid: choose one of linear, softplus",
        ),
        (
            ["data=sine", "loss=mse", "data.target_scaling=log"],
            "data.target_scaling='log' is invalid: choose one of none, standardize, minmax",
        ),
        (["data.target_scaling=standardize"], "data.target_scaling='standardize' is invalid: it scales regression"),
        (
            ["transfer.mode=freeze"],
            "transfer.mode='freeze' is invalid: choose one of fine_tune, feature_extraction, freeze_then_fine_tune, none",
        ),
        (["transfer.reused_lr_factor=0"], "transfer.reused_lr_factor=0.0 is invalid"),
        (["transfer.init_from=/nowhere"], "transfer.init_from='/nowhere' is invalid"),
        (["optimizer.lr=inf"], "optimizer.lr=inf is invalid: it must be a finite number"),
        (["optimizer.lr=1e400"], "optimizer.lr=inf is invalid: it must be a finite number"),
        (["regularization.clip_grad_norm=inf"], "regularization.clip_grad_norm=inf is invalid"),
        (["+trainer.foo=1"], "trainer.foo is not a setting of nnlab."),
        (["+colour=red"], "colour is not a setting of nnlab."),
        (["model.dropout=[0.5]"], "one rate in [0, 1) per hidden layer (2 here)"),
        (["model.dropout=[0.5,1.0]"], "one rate in [0, 1) per hidden layer"),
        (["model.dropout=[0.5,x]"], "one rate in [0, 1) per hidden layer"),
        (["model.input_dropout=1.0"], "model.input_dropout=1.0 is invalid: a dropout probability must be in [0, 1)"),
        (["model=cnn", "model.dropout=[0.5,0.5]"], "model.dropout=[0.5, 0.5] is invalid: it must be a number"),
        (["regularization.hidden_noise=-1"], "regularization.hidden_noise=-1.0 is invalid"),
        (["model=resnet18", "regularization.hidden_noise=0.1"], "noise on hidden activations is model=mlp's"),
    ],
)
def test_each_bad_value_is_named(overrides, message):
    cfg = compose([*TOY, *overrides])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert message in str(e.value)


def test_the_default_config_and_every_choice_of_a_literal_pass():
    validate(compose(TOY))
    for kind in ("auto", "standard", "alpha"):
        validate(compose([*TOY, f"model.dropout_kind={kind}"]))


def test_a_run_config_with_a_target_outside_the_allowlist_is_refused(tmp_path):
    """A run folder is input: its config.yaml cannot make nnlab call an arbitrary function."""
    cfg = compose(TOY)
    cfg.data.source = {"_target_": "torch.load", "f": str(tmp_path / "payload.pt"), "weights_only": False}
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    with pytest.raises(ConfigError, match=r"config.yaml: data.source._target_='torch.load' is invalid"):
        load_run_config(tmp_path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a list\n- not a mapping\n", "is not an nnlab config"),
        ("trainer: {epochs: [1, 2}\n", "is not a readable config"),
        ("trainer:\n  epochs: many\n", "does not fit nnlab's config schema"),
        ("", "the config does not resolve: Missing mandatory value"),
    ],
)
def test_a_damaged_run_config_is_one_clear_error(tmp_path, text, message):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_run_config(tmp_path)


def test_a_run_config_from_before_the_transfer_node_still_loads(tmp_path):
    cfg = OmegaConf.to_container(compose(TOY), resolve=True)
    cfg["model"].update(init_from=None, transfer="feature_extraction", reused_lr_factor=0.5)
    del cfg["transfer"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    loaded = load_run_config(tmp_path)
    assert loaded.transfer.mode == "feature_extraction" and loaded.transfer.reused_lr_factor == 0.5
    assert "transfer" not in loaded.model


@pytest.mark.parametrize(
    "overrides, refused",
    [
        (["optimizer=rmsprop", "optimizer.alpha=1.5"], "optimizer.alpha=1.5 is invalid: alpha (the average's decay)"),
        (["activation=elu", "+activation.alpha=1.5"], None),  # ELU's alpha is not an average's decay
        (["optimizer=adadelta", "optimizer.rho=1.5"], "optimizer.rho=1.5 is invalid"),
        (["schedule=plateau", "schedule.factor=1.5"], "schedule.factor=1.5 is invalid: the factor must be in (0, 1)"),
        (["data=circles", "data.source.factor=1.5"], "data.source.factor=1.5 is invalid"),
        (["data=circles", "data.source.factor=0.3"], None),
    ],
)
def test_a_settings_range_is_its_targets(overrides, refused):
    """Ranges are keyed by (target, setting): a name shared by two targets keeps each one's meaning."""
    cfg = compose([*TOY, *overrides])
    if refused is None:
        validate(cfg)
        return
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert refused in str(e.value)
