"""The command line's pre-flight check and compose(): what a user typed becomes a config, or one
paragraph naming the problem, before any job starts."""

from __future__ import annotations

import pytest

from nnlab.cli.command_line import check_command_line, compose
from nnlab.errors import ConfigError


def test_compose_gives_the_config_nnlab_train_runs():
    cfg = compose(["activation=tanh", "optimizer.lr=0.01"])
    assert cfg.activation._target_ == "torch.nn.Tanh" and cfg.optimizer.lr == 0.01
    assert cfg.trainer.epochs == 30 and cfg.transfer.mode == "fine_tune"  # the values of conf/train.yaml
    assert "hydra" not in cfg and "hydra" in compose([], hydra=True)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["activation=rellu"], "Did you mean activation=relu?"),
        (["activation=Relu"], "Did you mean activation=relu?"),  # the case, not the closest spelling (elu)
        (["trainer.epoch=3"], "Did you mean trainer.epochs?"),
        (["trainer.epochs=abc"], "trainer.epochs='abc' is invalid: it must be of type Integer"),
        (["model=3"], "`model` is a config group; choose one of its options"),
    ],
)
def test_a_composition_error_is_one_paragraph(overrides, message):
    with pytest.raises(ConfigError) as e:
        compose(overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_every_value_of_a_sweep_is_checked_before_any_job(tmp_path):
    check_command_line(["-m", "optimizer.lr=0.1,0.01", f"hydra.sweep.dir={tmp_path / 's'}"])
    with pytest.raises(ConfigError, match="optimizer.lr=inf is invalid"):
        check_command_line(["-m", "optimizer.lr=0.1,inf", f"hydra.sweep.dir={tmp_path / 's'}"])
    assert not (tmp_path / "s").exists()  # the check creates nothing
