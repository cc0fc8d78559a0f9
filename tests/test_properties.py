"""Property-based tests (hypothesis): any valid combination of config-group options builds and trains a
step; any invalid value is refused with a one-paragraph ConfigError, never another exception."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from conftest import REPO
from nnlab.cli.command_line import check_command_line, compose
from nnlab.config.validate import validate
from nnlab.data.toy import REGRESSION
from nnlab.errors import ConfigError
from nnlab.training.setup import setup
from nnlab.training.steps import train_step

CONF = REPO / "src" / "nnlab" / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


TOY = [d for d in options("data") if d not in ("mnist", "cifar10")]
TWO_CLASS = {"moons", "circles", "xor"}
PROPERTY = settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def valid_overrides(draw) -> list[str]:
    data = draw(st.sampled_from(TOY))
    if data in REGRESSION:  # float targets: the regression losses, with either output link
        losses = [f"mse loss.output={draw(st.sampled_from(['linear', 'softplus']))}", "huber"]
    else:
        losses = [o for o in options("loss") if o != "bce" or data in TWO_CLASS]
    hidden = draw(st.lists(st.integers(1, 16), min_size=0, max_size=3))
    schedule = draw(st.sampled_from(options("schedule")))
    val = draw(st.sampled_from([0.0, 0.2])) if schedule != "plateau" else 0.2
    return [
        f"data={data}",
        f"activation={draw(st.sampled_from(options('activation')))}",
        f"init={draw(st.sampled_from(options('init')))}",
        f"optimizer={draw(st.sampled_from(options('optimizer')))}",
        f"schedule={schedule}",
        *f"loss={draw(st.sampled_from(losses))}".split(),
        f"model.hidden=[{','.join(map(str, hidden))}]",
        f"model.batch_norm={draw(st.booleans())}",
        f"model.dropout={draw(st.sampled_from([0.0, 0.5]))}",
        f"data.val_fraction={val}",
        f"data.preprocess={draw(st.sampled_from(['none', 'center', 'standardize']))}",
        f"trainer.batch_size={draw(st.integers(2, 64))}",
        f"trainer.seed={draw(st.integers(0, 2**31 - 1))}",
        f"regularization.l1={draw(st.sampled_from([0.0, 1e-3]))}",
        f"regularization.input_noise={draw(st.sampled_from([0.0, 0.1]))}",
        "data.source.n_train=40",
        "data.source.n_test=20",
        "trainer.epochs=2",
        "early_stopping.metric=loss/train",
    ]


@PROPERTY
@given(valid_overrides())
def test_any_valid_combination_builds_and_trains_a_step(overrides):
    cfg = compose(overrides)
    validate(cfg)
    exp = setup(cfg)
    x, y = exp.data.train.x[: exp.trainer.batch_size], exp.data.train.y[: exp.trainer.batch_size]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = [p.detach().clone() for p in exp.model.parameters()]
    out, loss, norm = train_step(exp, x, y, scaler)
    assert out.shape[0] == len(y) and math.isfinite(loss.item()) and math.isfinite(norm.item())
    assert any(not torch.equal(a, b) for a, b in zip(before, exp.model.parameters())) or norm.item() == 0


# Each knob with values it must refuse: (override key, groups it needs, strategy of invalid values)
NEGATIVE = st.floats(max_value=-1e-6, allow_nan=False, allow_infinity=True)
NOT_POSITIVE_INT = st.integers(max_value=0)
BAD_FLOAT = st.one_of(NEGATIVE, st.just(math.nan))
OUTSIDE_UNIT = st.one_of(NEGATIVE, st.floats(min_value=1.0, allow_nan=False), st.just(math.nan))
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
KNOBS = [
    ("trainer.epochs", [], NOT_POSITIVE_INT),
    ("trainer.batch_size", [], st.one_of(NOT_POSITIVE_INT, WORDS.filter(lambda w: w != "full"))),
    ("trainer.log_every", [], NOT_POSITIVE_INT),
    ("trainer.eval_batch_size", [], NOT_POSITIVE_INT),
    ("trainer.keep_checkpoints", [], st.integers(max_value=-1)),
    ("trainer.seed", [], st.integers(max_value=-1)),
    ("data.val_fraction", [], OUTSIDE_UNIT),
    ("data.source.n_train", [], st.integers(max_value=1)),
    ("data.source.noise", [], NEGATIVE),
    ("model.dropout", [], OUTSIDE_UNIT),
    (
        "model.hidden",
        [],
        st.lists(st.integers(max_value=0), min_size=1, max_size=3).map(lambda v: "[" + ",".join(map(str, v)) + "]"),
    ),
    ("optimizer.lr", [], st.one_of(BAD_FLOAT, st.just(0.0))),
    ("optimizer.eps", [], st.one_of(BAD_FLOAT, st.just(0.0))),
    ("optimizer.weight_decay", [], BAD_FLOAT),
    (
        "optimizer.betas",
        [],
        st.tuples(st.floats(0, 0.99), st.floats(min_value=1.0, max_value=1e6)).map(lambda b: f"[{b[0]},{b[1]}]"),
    ),
    ("optimizer.momentum", ["optimizer=momentum"], OUTSIDE_UNIT),
    ("optimizer.alpha", ["optimizer=rmsprop"], OUTSIDE_UNIT),
    (
        "schedule.gamma",
        ["schedule=step"],
        st.one_of(NEGATIVE, st.floats(min_value=1.0001, allow_nan=False, allow_infinity=False)),
    ),
    ("schedule.pct_start", ["schedule=onecycle"], st.one_of(NEGATIVE, st.floats(min_value=1.0), st.just(0.0))),
    (
        "schedule.milestones",
        ["schedule=multistep"],
        st.lists(st.integers(max_value=0), min_size=1, max_size=3).map(lambda v: "[" + ",".join(map(str, v)) + "]"),
    ),
    ("loss.label_smoothing", [], OUTSIDE_UNIT),
    ("loss.delta", ["loss=huber"], st.one_of(BAD_FLOAT, st.just(0.0))),
    ("data.source.outliers", ["data=sine", "loss=mse"], OUTSIDE_UNIT),
    ("data.source.outlier_scale", ["data=bump", "loss=huber"], NEGATIVE),
    ("regularization.l1", [], BAD_FLOAT),
    ("regularization.clip_grad_norm", [], st.one_of(BAD_FLOAT, st.just(0.0))),
    ("early_stopping.patience", [], NOT_POSITIVE_INT),
    ("diagnostics.probe_size", [], NOT_POSITIVE_INT),
    ("activation.k", ["activation=maxout"], st.integers(max_value=1)),
]


NULLABLE = {"regularization.clip_grad_norm", "early_stopping.patience"}  # null: off


def hydra_value(v) -> str:
    return str(v) if not isinstance(v, float) else ("nan" if math.isnan(v) else repr(v))


@st.composite
def invalid_override(draw) -> list[str]:
    kind = draw(st.sampled_from(["range", "type", "option", "key"]))
    if kind == "range":
        key, needs, values = draw(st.sampled_from(KNOBS))
        return [*needs, f"{key}={hydra_value(draw(values))}"]
    if kind == "type":  # a word where a number belongs
        key, needs, _ = draw(
            st.sampled_from(
                [k for k in KNOBS if k[0] not in ("model.hidden", "optimizer.betas", "schedule.milestones")]
            )
        )
        words = WORDS.filter(lambda w: w not in ("nan", "inf", "null", "true", "false"))
        word = draw(words if key in NULLABLE else st.one_of(st.just("null"), words))
        return [*needs, f"{key}={word}"]
    if kind == "option":  # a group option that does not exist
        group = draw(st.sampled_from(["activation", "init", "optimizer", "schedule", "data", "model", "loss"]))
        return [f"{group}={draw(WORDS.filter(lambda w: w not in options(group)))}"]
    section = draw(st.sampled_from(["trainer", "optimizer", "model", "data", "regularization"]))
    return [f"{section}.{draw(WORDS.filter(lambda w: w not in ('lr', 'seed')))}_x=1"]  # an unknown key


@settings(max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_override())
def test_any_invalid_value_is_a_one_paragraph_config_error(overrides):
    with pytest.raises(ConfigError) as e:
        check_command_line(overrides)
    message = str(e.value)
    assert message and "\n" not in message and "Traceback" not in message, message


@pytest.mark.slow
@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_override())
def test_an_invalid_value_in_a_sweep_is_the_same_error(overrides):
    """A sweep's values are set on the composed config without composing each again (command_line._set_value):
    a bad one is refused with the very message it gets on its own."""
    *needs, last = overrides
    key, _, value = last.partition("=")
    with pytest.raises(ConfigError) as alone:
        check_command_line(overrides)
    with pytest.raises(ConfigError) as swept:
        check_command_line(["-m", *needs, f"{key}={value},{value}"])
    assert str(swept.value).lower() == str(alone.value).lower()  # Hydra spells a swept true as True


def test_a_sweep_value_set_without_composing_equals_the_composed_config():
    from nnlab.cli.command_line import _set_value

    base = compose([])
    for override in [
        "trainer.seed=3",
        "optimizer.lr=0.5",
        "model.hidden=[8,8]",
        "regularization.clip_grad_norm=null",
        "trainer.device=cpu",
        "data.source.noise=0.3",
        "early_stopping.patience=4",
    ]:
        fast = _set_value(base, override, "nnlab.conf")
        assert fast is not None, override
        composed = compose([override])
        assert OmegaConf.to_container(fast, resolve=True) == OmegaConf.to_container(composed, resolve=True), override
    for override in [
        "activation=tanh",
        "+trainer.extra=1",
        "~regularization.l1",
        "hydra/launcher=joblib",
        "trainer.epochs=many",
    ]:
        assert _set_value(base, override, "nnlab.conf") is None, override  # composed instead
