"""Structured configs (types and defaults, checked by Hydra at compose time) and validate().

The `_target_` groups (model, activation, init, optimizer, schedule, loss, data.source) are free-form
nodes: validate() checks them against the signature of their target *without building anything*, plus
the cross-field rules, so a bad run stops before any data is loaded.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict

from nnlab.metrics import ALL as ALL_METRICS

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
PREPROCESS = ("none", "center", "standardize")
MONITORED = tuple(f"{m}/{split}" for m in ALL_METRICS for split in ("val", "train"))
TARGET_PREFIXES = ("nnlab.", "torch.nn.", "torch.optim.")
TARGET_GROUPS = ("model", "activation", "init", "optimizer", "schedule", "loss")
TRANSFER_KEYS = ("init_from", "transfer", "reused_lr_factor")  # model keys for nnlab/transfer.py, not the class


class ConfigError(ValueError):
    """A user error in the configuration: reported as one paragraph, never as a traceback."""


@dataclass
class TrainerConfig:
    epochs: int = 30
    batch_size: int = 32
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    precision: str = "fp32"
    compile: bool = False
    log_every: int = 10
    eval_every: int = 1
    boundary_every: int = 5
    eval_batch_size: int = 2048
    progress: bool = True
    checkpoint_every: int = 0
    keep_checkpoints: int = 0
    channels_last: Optional[bool] = None  # null: on for convolutional models
    threads: Optional[int] = None  # CPU threads of torch; null: 1 for the toy sets, else torch's default


@dataclass
class DataConfig:
    source: Any = MISSING
    val_fraction: float = 0.1
    preprocess: str = "standardize"
    subset: Optional[int] = None
    augment: bool = False


@dataclass
class RegularizationConfig:
    l1: float = 0.0
    input_noise: float = 0.0
    clip_grad_norm: Optional[float] = None
    clip_grad_value: Optional[float] = None
    max_norm: Optional[float] = None
    activity_l1: float = 0.0


@dataclass
class EarlyStoppingConfig:
    metric: str = "loss/val"
    patience: Optional[int] = None
    min_delta: float = 0.0


@dataclass
class DiagnosticsConfig:
    every: int = 50  # optimizer steps between per-layer statistics; 0 turns them off
    probe_size: int = 256  # fixed probe batch (first training examples) for activation statistics
    histograms_every: int = 5  # epochs between histograms of weights, gradients, activations; 0: never
    saturation_eps: float = 0.02  # sigmoid/tanh outputs within this fraction of a bound are saturated


@dataclass
class AlarmsConfig:
    enabled: bool = True
    initial_loss_tolerance: float = 0.5  # relative distance from ln C (cross-entropy) / ln 2 (bce)
    divergence_factor: float = 3.0  # stop when the loss exceeds this x the initial loss (or is NaN/Inf)
    flat_after_steps: int = 200  # check for a flat loss at this step
    flat_min_drop: float = 0.05  # the loss must have dropped by this fraction of the initial loss
    grad_ratio_low: float = 0.01  # first/last layer gradient norm below this: vanishing
    grad_ratio_high: float = 100.0  # above this: exploding
    dead_fraction: float = 0.5  # of a layer's ReLU-family units
    saturated_fraction: float = 0.25  # of a layer's sigmoid/tanh outputs
    update_ratio_low: float = 1.0e-5  # typical ||dW||/||W|| per step below this: lr too low
    update_ratio_high: float = 0.1  # above this: lr too high
    overfit_gap: float = 0.1  # train - val accuracy (R^2 for regression) at the end
    underfit_acc: float = 0.75  # train accuracy (R^2) at the end below this (with no gap): underfitting


@dataclass
class CheckConfig:
    l2: float = 1.0  # step 2: the cranked-up L2 strength (0.5 * l2 * sum of squared weights is added)
    tiny_subset: int = 20  # step 3: examples to overfit
    overfit_steps: int = 300  # full-batch steps allowed
    overfit_acc: float = 1.0  # training accuracy to reach
    overfit_r2: float = 0.95  # regression: training R^2 to reach


@dataclass
class LRFindConfig:
    min_lr: float = 1.0e-7
    max_lr: float = 10.0
    steps: int = 100  # batches over which the rate grows from min_lr to max_lr
    smoothing: float = 0.9  # exponential smoothing of the loss
    explode_factor: float = 4.0  # stop once the smoothed loss exceeds this x its minimum


@dataclass
class BatchSizeFindConfig:
    start: Optional[int] = None  # first batch size tried (null: trainer.batch_size); it doubles from there
    max_memory_mb: Optional[float] = None  # bound on a step's memory (null: the GPU's memory; a quarter of RAM on CPU)
    max_batch: Optional[int] = None  # stop doubling here (null: the training set's size)


@dataclass
class PretrainConfig:
    method: str = "none"  # none | supervised | autoencoder (greedy layer-wise, MLP hidden layers)
    epochs: int = 5  # per stage (a hidden layer; the head, after autoencoders)


@dataclass
class NNLabConfig:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    check: CheckConfig = field(default_factory=CheckConfig)
    lr_find: LRFindConfig = field(default_factory=LRFindConfig)
    batch_size_find: BatchSizeFindConfig = field(default_factory=BatchSizeFindConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    resume: Optional[str] = None
    model: Any = MISSING
    activation: Any = MISSING
    init: Any = MISSING
    optimizer: Any = MISSING
    schedule: Any = MISSING
    loss: Any = MISSING


def register_configs() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="nnlab_schema", node=NNLabConfig)


# ----------------------------------------------------------------------------------------------------
# validate()


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first problem found in a composed config."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as e:  # interpolation or missing value
        raise ConfigError(f"the config does not resolve: {e}") from None
    _check_trainer(cfg.trainer)
    _check_data(cfg.data)
    _check_regularization(cfg.regularization, cfg.early_stopping)
    _check_diagnostics(cfg)
    for group in TARGET_GROUPS:
        _check_target(group, cfg[group])
    _check_target("data.source", cfg.data.source)
    _check_numbers(cfg)
    _check_combinations(cfg)


def load_run_config(run_dir) -> DictConfig:
    """The config a run was made with (RUN/config.yaml), typed by the schema again."""
    from pathlib import Path

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: is {run_dir} an nnlab run directory?")
    loaded = OmegaConf.load(path)
    with open_dict(loaded):
        loaded.pop("choices", None)
    return OmegaConf.merge(OmegaConf.structured(NNLabConfig), loaded)


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {why}.")


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(key, value, f"choose one of {', '.join(choices)}")


def _positive(key: str, value: Any, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not (value > 0 or (allow_zero and value == 0)) or (isinstance(value, float) and math.isnan(value)):
        _fail(key, value, "it must be " + ("zero or positive" if allow_zero else "positive"))


def _check_trainer(t: DictConfig) -> None:
    for key in ("epochs", "batch_size", "log_every", "eval_every", "boundary_every", "eval_batch_size"):
        _positive(f"trainer.{key}", t[key])
    _positive("trainer.seed", t.seed, allow_zero=True)
    _positive("trainer.checkpoint_every", t.checkpoint_every, allow_zero=True)
    _positive("trainer.keep_checkpoints", t.keep_checkpoints, allow_zero=True)
    _positive("trainer.threads", t.threads)
    device = t.device.split(":")[0]
    if device not in DEVICES:
        _fail("trainer.device", t.device, f"choose one of {', '.join(DEVICES)} (or cuda:N)")
    _choice("trainer.precision", t.precision, PRECISIONS)
    if device in ("cuda", "mps"):
        import torch

        available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
        if not available:
            _fail("trainer.device", t.device, f"no {device} device is available here; use trainer.device=auto or cpu")
    if t.precision == "fp16" and device != "cuda":
        import torch

        if not (device == "auto" and torch.cuda.is_available()):
            _fail("trainer.precision", "fp16", "fp16 autocast needs a CUDA device; use bf16 on CPU, or fp32")


def _check_data(d: DictConfig) -> None:
    if not 0 <= d.val_fraction < 1:
        _fail("data.val_fraction", d.val_fraction, "it must be in [0, 1)")
    _choice("data.preprocess", d.preprocess, PREPROCESS)
    if d.subset is not None and d.subset < 2:
        _fail("data.subset", d.subset, "training needs at least 2 examples")


def _check_regularization(r: DictConfig, es: DictConfig) -> None:
    _positive("regularization.l1", r.l1, allow_zero=True)
    _positive("regularization.input_noise", r.input_noise, allow_zero=True)
    _positive("regularization.clip_grad_norm", r.clip_grad_norm)
    _positive("regularization.clip_grad_value", r.clip_grad_value)
    _positive("regularization.max_norm", r.max_norm)
    _positive("regularization.activity_l1", r.activity_l1, allow_zero=True)
    _choice("early_stopping.metric", es.metric, MONITORED)
    _positive("early_stopping.patience", es.patience)
    _positive("early_stopping.min_delta", es.min_delta, allow_zero=True)


def _check_diagnostics(cfg: DictConfig) -> None:
    d, a, c, f = cfg.diagnostics, cfg.alarms, cfg.check, cfg.lr_find
    for key in ("every", "histograms_every"):
        _positive(f"diagnostics.{key}", d[key], allow_zero=True)
    _positive("diagnostics.probe_size", d.probe_size)
    if not 0 < d.saturation_eps < 0.5:
        _fail("diagnostics.saturation_eps", d.saturation_eps, "it must be in (0, 0.5)")
    for key, value in a.items():
        if key != "enabled":
            _positive(f"alarms.{key}", value)
    if a.grad_ratio_low >= a.grad_ratio_high or a.update_ratio_low >= a.update_ratio_high:
        raise ConfigError("alarms: each *_low bound must be below its *_high bound.")
    for key in ("tiny_subset", "overfit_steps", "overfit_acc"):
        _positive(f"check.{key}", c[key])
    _positive("check.l2", c.l2)
    if c.overfit_acc > 1:
        _fail("check.overfit_acc", c.overfit_acc, "an accuracy is at most 1")
    if not c.overfit_r2 <= 1:
        _fail("check.overfit_r2", c.overfit_r2, "R^2 is at most 1")
    _positive("lr_find.min_lr", f.min_lr)
    _positive("lr_find.steps", f.steps)
    if f.max_lr <= f.min_lr:
        _fail("lr_find.max_lr", f.max_lr, f"it must be above lr_find.min_lr={f.min_lr}")
    if not 0 <= f.smoothing < 1:
        _fail("lr_find.smoothing", f.smoothing, "it must be in [0, 1)")
    if f.explode_factor <= 1:
        _fail("lr_find.explode_factor", f.explode_factor, "it must be above 1")
    for key, value in cfg.batch_size_find.items():
        _positive(f"batch_size_find.{key}", value)


def resolve_target(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _check_target(group: str, node: Any) -> None:
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"`{group}` must be a config node with a `_target_`; got {node!r}.")
    target = node._target_
    if not str(target).startswith(TARGET_PREFIXES):
        _fail(f"{group}._target_", target, f"targets must start with one of {', '.join(TARGET_PREFIXES)}")
    obj = resolve_target(target)
    if obj is None:
        _fail(f"{group}._target_", target, "no such class or function")
    params = inspect.signature(obj).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in node:
        if str(key).startswith("_") and str(key).endswith("_") or (group == "model" and key in TRANSFER_KEYS):
            continue
        if key not in params:
            valid = [n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL]
            raise ConfigError(
                f"{group}.{key} is not a setting of {target}.{_did_you_mean(str(key), valid, group + '.')} "
                f"Its settings are: {', '.join(valid)}."
            )
        default = params[key].default
        value = node[key]
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            optional = any(word in str(params[key].annotation) for word in ("Optional", "None"))
            if value is None and not optional:
                _fail(f"{group}.{key}", value, "it must be a number (null is not allowed here)")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                _fail(f"{group}.{key}", value, "it must be a number")
        if isinstance(default, bool) and not isinstance(value, bool):
            _fail(f"{group}.{key}", value, "it must be true or false")


def _zero_or_positive(name: str):
    return (lambda v: v >= 0, f"{name} must be zero or positive")


def _positive_rule(name: str):
    return (lambda v: v > 0, f"{name} must be positive")


def _unit_rule(name: str):
    return (lambda v: 0 <= v < 1, f"{name} must be in [0, 1)")


# Range rules for common keys of the free-form groups: (group, key) -> (check, message)
_RANGES = {
    "lr": _positive_rule("the learning rate"),
    "weight_decay": _zero_or_positive("weight decay"),
    "momentum": _unit_rule("momentum"),
    "dropout": _unit_rule("a dropout probability"),
    "gamma": (lambda v: 0 < v <= 1, "the decay factor must be in (0, 1]"),
    "factor": (lambda v: 0 < v < 1, "the factor must be in (0, 1)"),
    "n_train": (lambda v: v >= 2, "at least 2 points are needed"),
    "n_test": (lambda v: v >= 1, "at least 1 test point is needed"),
    "noise": _zero_or_positive("noise"),
    "classes": (lambda v: v >= 2, "at least 2 classes are needed"),
    "k": (lambda v: v >= 2, "maxout needs at least 2 pieces"),
    "kernel_size": (lambda v: v >= 1, "the kernel size must be positive"),
    "pool_every": (lambda v: v >= 1, "pool_every must be at least 1"),
    "label_smoothing": _unit_rule("label smoothing"),
    # optimizers
    "eps": _positive_rule("eps"),
    "rho": _unit_rule("rho (the average's decay)"),
    "alpha": _unit_rule("alpha (the average's decay)"),
    "dampening": (lambda v: 0 <= v <= 1, "dampening must be in [0, 1]"),
    "lr_decay": _zero_or_positive("lr_decay"),
    "initial_accumulator_value": _zero_or_positive("the initial accumulator"),
    "initial_accumulator": _zero_or_positive("the initial accumulator"),
    "momentum_decay": _zero_or_positive("momentum_decay"),
    # schedules (sizes in epochs)
    "min_lr": _zero_or_positive("min_lr"),
    "step_epochs": (lambda v: v >= 1, "step_epochs must be at least 1"),
    "warmup_epochs": _zero_or_positive("warmup_epochs"),
    "max_lr_factor": _positive_rule("max_lr_factor"),
    "base_lr_factor": _positive_rule("base_lr_factor"),
    "half_cycle_epochs": _positive_rule("half_cycle_epochs"),
    "pct_start": (lambda v: 0 < v < 1, "pct_start must be in (0, 1)"),
    "patience": _zero_or_positive("patience"),
    "threshold": _zero_or_positive("threshold"),
    # losses, init, data
    "delta": _positive_rule("the Huber delta"),
    "outliers": _unit_rule("the fraction of outliers"),
    "outlier_scale": _zero_or_positive("outlier_scale"),
    "std": _positive_rule("a standard deviation"),
    "scale": _positive_rule("scale"),
}


def _check_numbers(cfg: DictConfig) -> None:
    for group in (*TARGET_GROUPS, "data.source"):
        node = OmegaConf.select(cfg, group)
        for key, value in node.items():
            if key in _RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
                ok, why = _RANGES[key]
                if not ok(value) or (isinstance(value, float) and math.isnan(value)):
                    _fail(f"{group}.{key}", value, why)
    for key, value in (("optimizer.betas", cfg.optimizer.get("betas")), ("schedule.milestones", cfg.schedule.get("milestones"))):
        if value is None:
            continue
        numbers = isinstance(value, ListConfig) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if key.endswith("betas") and not (numbers and len(value) == 2 and all(0 <= b < 1 for b in value)):
            _fail(key, value, "it must be two decay rates in [0, 1), e.g. [0.9,0.999]")
        if key.endswith("milestones") and not (numbers and all(isinstance(m, int) and m >= 1 for m in value)):
            _fail(key, value, "it must be a list of epochs (positive integers), e.g. [10,15]")
    if "pool" in cfg.model:
        _choice("model.pool", cfg.model.pool, ("max", "avg", "none"))
    if cfg.model.get("transfer") is not None:
        _choice("model.transfer", cfg.model.transfer, ("fine_tune", "feature_extraction", "none"))
    _positive("model.reused_lr_factor", cfg.model.get("reused_lr_factor"))
    source = cfg.model.get("init_from")
    if source and cfg.model.get("transfer") != "none":
        from nnlab.checkpoint import of_run

        if not of_run(str(source)).is_file():
            _fail("model.init_from", source, "there is no run directory with checkpoints, nor a checkpoint file, there")
    kept = cfg.data.source.get("keep_classes")
    if kept is not None and not (isinstance(kept, ListConfig) and len(kept) >= 2 and len(set(kept)) == len(kept)
                                 and all(isinstance(c, int) and 0 <= c <= 9 for c in kept)):  # fmt: skip
        _fail("data.source.keep_classes", kept, "it must list 2 or more distinct labels in 0..9, e.g. [5,6,7,8,9]")
    if "output" in cfg.loss:
        _choice("loss.output", cfg.loss.output, ("linear", "softplus"))
    if "dropout_kind" in cfg.model:
        _choice("model.dropout_kind", cfg.model.dropout_kind, ("auto", "standard", "alpha"))
    if "padding" in cfg.model:
        _choice("model.padding", cfg.model.padding, ("same", "valid"))
    for key in ("hidden", "channels"):
        widths = cfg.model.get(key)
        if widths is not None:
            if not isinstance(widths, ListConfig) or not all(isinstance(w, int) and w > 0 for w in widths):
                _fail(f"model.{key}", widths, "it must be a list of positive integers, e.g. [64,64]")


def _check_combinations(cfg: DictConfig) -> None:
    from nnlab.data import describe

    from nnlab import metrics

    kind, classes = describe(cfg.data.source)
    if kind in ("points", "regression") and cfg.model._target_.endswith((".CNN", ".ResNet18")):
        raise ConfigError(
            f"model=cnn needs image data, but the data are {'2-D points' if kind == 'points' else 'a regression set'} "
            f"({cfg.data.source._target_}); use model=mlp, or data=mnist / data=cifar10."
        )
    if kind == "regression" and not getattr(resolve_target(cfg.loss._target_), "regression", False):
        raise ConfigError(
            f"the loss {cfg.loss._target_} needs class labels, but {cfg.data.source._target_} is a regression set "
            "(float targets); add loss=mse or loss=huber."
        )
    if kind != "regression" and cfg.loss.get("output", "linear") != "linear":
        _fail("loss.output", cfg.loss.output, "an output link is for regression targets (data=sine, ripple, bump); "
              "classification reads the outputs as scores")  # fmt: skip
    metric = cfg.early_stopping.metric.split("/")[0]
    if metric != "loss" and metric not in metrics.names(kind):
        task = "regression" if kind == "regression" else "classification"
        _fail("early_stopping.metric", cfg.early_stopping.metric, f"{task} logs loss, {', '.join(metrics.names(kind))}; "
              f"e.g. loss/val or {metrics.score(kind)}/val")  # fmt: skip
    n_train = cfg.data.source.get("n_train")
    if n_train is not None and round(n_train * (1 - cfg.data.val_fraction)) < 2:
        _fail("data.source.n_train", n_train, f"with data.val_fraction={cfg.data.val_fraction} fewer than 2 training points remain")
    if kind != "images" and cfg.data.augment:
        _fail("data.augment", True, "augmentation is defined for image data (mnist, cifar10) only")
    if cfg.loss._target_.endswith(".BCE") and classes != 2:
        raise ConfigError(
            f"loss=bce is a binary loss (one sigmoid output), but the data have {classes} classes; "
            "use loss=cross_entropy, or a two-class data set (moons, circles, xor)."
        )
    _check_pretrain(cfg)
    if cfg.schedule._target_.endswith(".plateau") and cfg.data.val_fraction == 0:
        _fail("schedule", "plateau", "it follows the validation loss, so data.val_fraction must be > 0")
    if cfg.early_stopping.metric.endswith("/val") and cfg.data.val_fraction == 0:
        _fail(
            "early_stopping.metric",
            cfg.early_stopping.metric,
            "there is no validation split (data.val_fraction=0); monitor loss/train or hold out data",
        )


def _check_pretrain(cfg: DictConfig) -> None:
    from nnlab.pretrain import METHODS

    p = cfg.pretrain
    _choice("pretrain.method", p.method, METHODS)
    _positive("pretrain.epochs", p.epochs)
    if p.method == "none":
        return
    if not cfg.model._target_.endswith(".MLP") or not cfg.model.get("hidden"):
        _fail("pretrain.method", p.method, "greedy layer-wise pretraining is defined for model=mlp with at least one "
              "hidden layer (model.hidden)")  # fmt: skip
    if cfg.model.get("init_from") and cfg.model.get("transfer") != "none":
        _fail("pretrain.method", p.method, "model.init_from already gives the starting weights; pretrain or transfer, not both")


# ----------------------------------------------------------------------------------------------------
# The command line, checked before Hydra runs any job (so a sweep with one bad value never starts).

_FLAGS_WITH_VALUE = {"-c", "--cfg", "-p", "--package", "-cp", "--config-path", "-cn", "--config-name",
                     "-cd", "--config-dir", "--experimental-rerun", "--info"}  # fmt: skip
_NO_CHECK = {"-h", "--help", "-hh", "--hydra-help", "--info", "--shell-completion", "-sc", "--version"}


def check_command_line(args: list[str], config_module: str = "nnlab.conf", config_name: str = "train") -> None:
    """Compose the config for the overrides in `args` and validate() it, once for every value of every
    sweep; raise ConfigError with a one-paragraph message for the first problem."""
    if any(a.split("=")[0] in _NO_CHECK for a in args):
        return
    overrides, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = a in _FLAGS_WITH_VALUE
        elif not a.startswith("hydra."):
            overrides.append(a)
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"cannot parse the command line: {_first_line(e)}") from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    variants = [fixed]
    for o in parsed:
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:  # glob() and intervals: left to the sweeper
                continue
            variants += [fixed + [f"{o.get_key_element()}={v}"] for v in values]
    hydra_overrides = [a for a in args if a.startswith("hydra.")]
    base = None
    for i, variant in enumerate(variants):
        cfg = _set_value(base, variant[-1], config_module) if base is not None else None
        if cfg is None:
            cfg = _compose(variant + (hydra_overrides if i == 0 else []), config_module, config_name, hydra=i == 0)
        if i == 0:
            multirun = any(a in ("-m", "--multirun") for a in args)
            key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            try:
                folder = str(OmegaConf.select(cfg, key))
            except Exception:  # an unusual hydra setup: leave the folder to Hydra
                folder = None
            with open_dict(cfg):
                del cfg["hydra"]
            base = cfg
        validate(cfg)
    if folder and not any(a in ("-c", "--cfg") for a in args):
        _check_output_folder(folder, key)


def _set_value(base: DictConfig, override: str, config_module: str) -> Optional[DictConfig]:
    """The config of one sweep value without composing it again: `base` (the fixed overrides' config)
    with `key=value` set the way Hydra applies a value override after composition. None where that is not
    the same as composing (a config group, `+`/`++`/`~`, a package) or the value does not fit: the caller
    then composes, and Hydra's own error names the problem. A seed or rate sweep checks in milliseconds
    per value instead of a composition each."""
    import copy
    from pathlib import Path

    from hydra.core.override_parser.overrides_parser import OverridesParser

    o = OverridesParser.create().parse_override(override)
    key = o.key_or_group
    groups = Path(importlib.import_module(config_module).__file__).parent
    if o.is_add() or o.is_force_add() or o.is_delete() or o.package is not None or "/" in key or (groups / key).is_dir():
        return None
    cfg = copy.deepcopy(base)
    try:
        OmegaConf.update(cfg, key, o.value(), merge=True)
    except Exception:
        return None
    return cfg


def _check_output_folder(path: str, key: str) -> None:
    """Refuse, before any work, an output folder (hydra.run.dir, or hydra.sweep.dir with -m) that cannot
    be created or written. The folder itself is not created here: Hydra does that."""
    from pathlib import Path

    folder = Path(path).absolute()
    problem = unwritable(folder)
    if problem:
        raise ConfigError(
            f"the output folder {folder} cannot be created: {problem}. Choose another one with {key}=PATH "
            "(or run from a writable working directory: runs go under ./outputs by default)."
        )


def unwritable(folder) -> Optional[str]:
    """Why `folder` cannot be created and written (its nearest existing ancestor is a file, or not
    writable), or None when it can."""
    import os
    from pathlib import Path

    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable" + (" (a read-only file system)" if _read_only(existing) else "")
    return None


def _read_only(path) -> bool:
    import os

    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _compose(overrides: list[str], config_module: str, config_name: str, hydra: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module, version_base="1.3"):
            try:
                return compose(config_name, overrides=overrides, return_hydra_config=hydra)
            except (HydraException, OmegaConfBaseException, ValueError) as e:  # ValueError: group=true, group=3
                raise ConfigError(_explain(e, overrides)) from None
    finally:
        GlobalHydra.instance().clear()


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _explain(e: Exception, overrides: list[str]) -> str:
    """Hydra's composition errors, rewritten as one paragraph that names the key and the valid choices."""
    import re

    from hydra.core.global_hydra import GlobalHydra

    text = f"{e}\n{e.__cause__ or ''}"
    loader = GlobalHydra.instance().config_loader()
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        options = loader.get_group_options(group)
        return f"{group}={option}: there is no such option in the `{group}` group.{_did_you_mean(option, options, group + '=')} Choose one of: {', '.join(options)}."
    conversion = re.search(r"Value '([^']*)' (?:of type '\w+' )?could not be converted to (\w+)", text)
    if conversion:
        key = re.search(r"full_key: (\S+)", text) or re.search(r"override (\S+?)=", text)
        name = key.group(1) if key else "a value"
        return f"{name}={conversion.group(1)!r} is invalid: it must be of type {conversion.group(2)}."
    not_optional = re.search(r"field '([\w.]+)' is not Optional", text)
    if not_optional:
        return f"{not_optional.group(1)}=null is invalid: it needs a value (see nnlab train --cfg job for the default)."
    if re.search(r"Config group override must be a string or a list", text):  # activation=true, model=3
        for o in overrides:
            group, _, option = o.partition("=")
            options = loader.get_group_options(group) if "=" in o and not group.startswith(("+", "~")) else []
            if options and option not in options:
                return f"{group}={option}: `{group}` is a config group; choose one of its options: {', '.join(options)}."
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown:
        name = unknown.group(1)
        parent, _, leaf = name.rpartition(".")
        node = _node_at(loader, parent, [o for o in overrides if not o.lstrip("+~").startswith(name)])
        known = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
        target = resolve_target(str(node.get("_target_", ""))) if isinstance(node, DictConfig) else None
        if target is not None and leaf in inspect.signature(target).parameters:
            value = next((o.split("=", 1)[1] for o in overrides if o.startswith(name + "=")), "VALUE")
            return (
                f"{name} is not set in the chosen `{parent}` config, but {node._target_} accepts it: "
                f"add it with +{name}={value}."
            )
        where = f"`{parent}`" if parent else "the config"
        return (
            f"{name} is not a setting of {where}.{_did_you_mean(leaf, known, parent + '.' if parent else '')} "
            f"Its settings are: {', '.join(k for k in known if k != 'hydra')}."
        )
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _did_you_mean(word: str, choices: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {prefix}{close[0]}?" if close else ""


def _node_at(loader, parent: str, overrides: list[str]):
    """The config node at `parent` (dotted) composed with `overrides`, for 'did you mean' hints."""
    try:
        from hydra.types import RunMode

        cfg = loader.load_configuration("train", overrides=overrides, run_mode=RunMode.RUN)
        return OmegaConf.select(cfg, parent) if parent else cfg
    except Exception:
        return None
