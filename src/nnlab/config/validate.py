"""validate(cfg): every problem of a composed config found before anything is built or loaded.

The `_target_` groups (model, activation, init, optimizer, schedule, loss, data.source) are checked
against the allowlist and the signature of their target *without building anything* (targets.py: keys,
number types, Literal choices; no `_target_` anywhere else), then the numeric ranges (_RANGES) and the rules between keys. A config
read from disk (a run's config.yaml, for `resume`, `nnlab ensemble`, `nnlab.load_run`) goes through the
same checks: load_run_config().
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from nnlab.config.schema import (
    DEVICES,
    EACH_RUN,
    FULL_BATCH,
    LIGHT,
    MONITORED,
    ON_FAILURE,
    PRECISIONS,
    PREPROCESS,
    PRETRAIN_METHODS,
    PROJECTIONS,
    PRUNE_SCOPES,
    RUN_FIGURES,
    TARGET_SCALING,
    TRANSFER_MODES,
    NNLabConfig,
)
from nnlab.config.targets import TARGET_GROUPS, check_no_nested_targets, check_target, moved, resolve_target
from nnlab.errors import ConfigError, did_you_mean

_PASSED: set[str] = set()  # the configs validate() passed in this process, but for their seed


def validate(cfg: DictConfig, trains: bool = True) -> None:
    """Raise ConfigError for the first problem found in a composed config (`trains`: False for a trained run
    read back, whose optimizer is not built). A config that passed before in this process but for its seed
    (a sweep's seeds: the pre-flight's check, then each job's) has its seed checked only."""
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as e:  # interpolation or missing value
        raise ConfigError(f"the config does not resolve: {_first_line(e)}") from None
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    seed = plain.get("trainer", {}).pop("seed", None) if isinstance(plain.get("trainer"), dict) else None
    key = json.dumps([plain, trains], sort_keys=True, default=str)
    if key in _PASSED:
        _positive("trainer.seed", seed, allow_zero=True)
        return
    _validate(cfg, trains)
    _PASSED.add(key)


def _validate(cfg: DictConfig, trains: bool) -> None:
    _check_known_keys(cfg)
    check_no_nested_targets(cfg)
    _check_trainer(cfg.trainer)
    _check_data(cfg.data)
    _check_regularization(cfg.regularization, cfg.early_stopping)
    _check_diagnostics(cfg)
    for group in TARGET_GROUPS:
        check_target(group, cfg[group])
    check_target("data.source", cfg.data.source)
    _check_numbers(cfg)
    _check_limits(cfg, trains)
    _check_transfer(cfg.transfer)
    _check_prune(cfg.prune)
    _choice("sweep.on_failure", cfg.sweep.on_failure, ON_FAILURE)
    _choice("sweep.run_figures", cfg.sweep.run_figures, RUN_FIGURES)
    _choice("sweep.each_run", cfg.sweep.each_run, EACH_RUN)
    _choice("sweep.light", cfg.sweep.light, LIGHT)
    _check_combinations(cfg)


def load_run_config(run_dir, trains: bool = True) -> DictConfig:
    """The config a run was made with (RUN/config.yaml), typed by the schema and validate()d like a
    command line's: a config file is input like any other (its targets go through the allowlist).
    `trains`: False where the run is only read back (validate's)."""

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: is {run_dir} an nnlab run directory?")
    try:
        loaded = OmegaConf.load(path)
    except Exception as e:
        raise ConfigError(f"{path} is not a readable config ({type(e).__name__}: {_first_line(e)}).") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path} is not an nnlab config (it holds {type(loaded).__name__}, not a mapping).")
    with open_dict(loaded):
        loaded.pop("choices", None)
        moved(loaded)  # a target that has moved since the run was saved
        model = loaded.get("model")
        if isinstance(model, DictConfig) and "transfer" not in loaded:  # written before `transfer:` was its own node
            loaded["transfer"] = {
                "init_from": model.pop("init_from", None),
                "mode": model.pop("transfer", "fine_tune"),
                "reused_lr_factor": model.pop("reused_lr_factor", 0.1),
            }
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(NNLabConfig), loaded)
    except Exception as e:
        raise ConfigError(f"{path} does not fit nnlab's config schema: {_first_line(e)}.") from None
    try:
        validate(cfg, trains)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return cfg


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _check_known_keys(cfg: DictConfig) -> None:
    """No key the schema does not know (`+trainer.foo=1` would otherwise be carried along unread)."""

    def check(node: DictConfig, schema, prefix: str) -> None:
        fields = {f.name: f for f in dataclasses.fields(schema)}
        for key in node:
            if key not in fields:
                raise ConfigError(
                    f"{prefix}{key} is not a setting of nnlab.{did_you_mean(str(key), list(fields), prefix)} "
                    f"The settings{' of ' + prefix.rstrip('.') if prefix else ''} are: {', '.join(fields)}."
                )
            sub = fields[key].default_factory
            if dataclasses.is_dataclass(sub) and isinstance(node[key], DictConfig):
                check(node[key], sub, f"{prefix}{key}.")

    check(cfg, NNLabConfig, "")


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {why}.")


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(key, value, f"choose one of {', '.join(choices)}")


def _positive(key: str, value: Any, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not (value > 0 or (allow_zero and value == 0)) or (isinstance(value, float) and not math.isfinite(value)):
        _fail(key, value, "it must be " + ("zero or positive" if allow_zero else "positive"))


def _check_trainer(t: DictConfig) -> None:
    if isinstance(t.batch_size, str) and t.batch_size != FULL_BATCH or isinstance(t.batch_size, bool):
        _fail(
            "trainer.batch_size",
            t.batch_size,
            f"it must be a positive whole number (1: online learning), or {FULL_BATCH} (the whole training split "
            "in one batch: full-batch gradient descent)",
        )
    for key in ("epochs", "batch_size", "log_every", "eval_every", "boundary_every", "eval_batch_size"):
        if t[key] != FULL_BATCH:
            _positive(f"trainer.{key}", t[key])
    _positive("trainer.seed", t.seed, allow_zero=True)
    _positive("trainer.checkpoint_every", t.checkpoint_every, allow_zero=True)
    _positive("trainer.keep_checkpoints", t.keep_checkpoints, allow_zero=True)
    _positive("trainer.threads", t.threads)
    most = max(256, 4 * (os.cpu_count() or 1))
    if t.threads is not None and t.threads > most:  # torch starts them all at once: thousands crash the process
        _fail(
            "trainer.threads",
            t.threads,
            f"at most {most} (this machine has {os.cpu_count()} cores; null picks for you)",
        )
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
    _choice("data.target_scaling", d.target_scaling, TARGET_SCALING)
    _positive("data.components", d.components)
    if d.components is not None and d.preprocess not in PROJECTIONS:
        _fail(
            "data.components", d.components, "it is how many principal components data.preprocess=pca or whiten keeps"
        )
    if d.subset is not None and d.subset < 2:
        _fail("data.subset", d.subset, "training needs at least 2 examples")


def _check_regularization(r: DictConfig, es: DictConfig) -> None:
    _positive("regularization.l1", r.l1, allow_zero=True)
    _positive("regularization.input_noise", r.input_noise, allow_zero=True)
    _positive("regularization.clip_grad_norm", r.clip_grad_norm)
    _positive("regularization.clip_grad_value", r.clip_grad_value)
    _positive("regularization.max_norm", r.max_norm)
    _positive("regularization.activity_l1", r.activity_l1, allow_zero=True)
    _positive("regularization.hidden_noise", r.hidden_noise, allow_zero=True)
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
    if cfg.doctor.seeds < 2:
        _fail("doctor.seeds", cfg.doctor.seeds, "a band and a t-test need at least 2 seeds a setting")
    _positive("doctor.candidates", cfg.doctor.candidates)
    for key, value in cfg.batch_size_find.items():
        _positive(f"batch_size_find.{key}", value)


def _zero_or_positive(name: str):
    return (lambda v: v >= 0, f"{name} must be zero or positive")


def _positive_rule(name: str):
    return (lambda v: v > 0, f"{name} must be positive")


def _unit_rule(name: str):
    return (lambda v: 0 <= v < 1, f"{name} must be in [0, 1)")


# Range rules of the free-form groups' settings, by the group whose target owns them: (check, message).
# ELU's `alpha` is not RMSprop's `alpha`, so a rule applies only where its group says.
_RANGES = {
    "model": {
        "dropout": _unit_rule("a dropout probability"),
        "input_dropout": _unit_rule("a dropout probability"),
        "dense_dropout": _unit_rule("a dropout probability"),
        "kernel_size": (lambda v: v >= 1, "the kernel size must be positive"),
        "pool_every": (lambda v: v >= 1, "pool_every must be at least 1"),
    },
    "activation": {"k": (lambda v: v >= 2, "maxout needs at least 2 pieces")},
    "optimizer": {
        "lr": _positive_rule("the learning rate"),
        "weight_decay": _zero_or_positive("weight decay"),
        "momentum": _unit_rule("momentum"),
        "eps": _positive_rule("eps"),
        "dampening": (lambda v: 0 <= v <= 1, "dampening must be in [0, 1]"),
        "lr_decay": _zero_or_positive("lr_decay"),
        "initial_accumulator_value": _zero_or_positive("the initial accumulator"),
        "initial_accumulator": _zero_or_positive("the initial accumulator"),
        "momentum_decay": _zero_or_positive("momentum_decay"),
    },
    "schedule": {  # sizes in epochs
        "gamma": (lambda v: 0 < v <= 1, "the decay factor must be in (0, 1]"),
        "min_lr": _zero_or_positive("min_lr"),
        "step_epochs": (lambda v: v >= 1, "step_epochs must be at least 1"),
        "warmup_epochs": _zero_or_positive("warmup_epochs"),
        "max_lr_factor": _positive_rule("max_lr_factor"),
        "base_lr_factor": _positive_rule("base_lr_factor"),
        "half_cycle_epochs": _positive_rule("half_cycle_epochs"),
        "pct_start": (lambda v: 0 < v < 1, "pct_start must be in (0, 1)"),
    },
    "loss": {"delta": _positive_rule("the Huber delta"), "label_smoothing": _unit_rule("label smoothing")},
    "init": {"std": _positive_rule("a standard deviation"), "scale": _positive_rule("scale")},
    "data.source": {
        "n_train": (lambda v: v >= 2, "at least 2 points are needed"),
        "n_test": (lambda v: v >= 1, "at least 1 test point is needed"),
        "noise": _zero_or_positive("noise"),
        "classes": (lambda v: v >= 2, "at least 2 classes are needed"),
        "outliers": _unit_rule("the fraction of outliers"),
        "outlier_scale": _zero_or_positive("outlier_scale"),
        "scale": _positive_rule("scale"),
    },
}

# Rules of one target's setting, where a name means something of its own there (RMSprop's alpha is an
# average's decay; ELU's alpha is not): looked up before the group's (_RANGES), by the node's _target_.
_TARGET_RANGES = {
    "torch.optim.RMSprop": {"alpha": _unit_rule("alpha (the average's decay)")},
    "torch.optim.Adadelta": {"rho": _unit_rule("rho (the average's decay)")},
    "nnlab.engine.schedules.plateau": {
        "factor": (lambda v: 0 < v < 1, "the factor must be in (0, 1)"),
        "patience": _zero_or_positive("patience"),
        "threshold": _zero_or_positive("threshold"),
    },
    "nnlab.data.toy.circles": {"factor": (lambda v: 0 < v < 1, "the factor must be in (0, 1)")},
}


def rule_of(group: str, target: str | None, key: str):
    """The range rule of `key` under the node of `group` built from `target`: (test, why), or None."""
    return _TARGET_RANGES.get(target or "", {}).get(key) or _RANGES.get(group, {}).get(key)


def _check_numbers(cfg: DictConfig) -> None:
    for group in (*TARGET_GROUPS, "data.source"):
        node = OmegaConf.select(cfg, group)
        target = node.get("_target_")
        for key, value in node.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if not math.isfinite(value):
                _fail(f"{group}.{key}", value, "it must be a finite number")
            rule = rule_of(group, target, key)
            if rule is not None:
                ok, why = rule
                if not ok(value):
                    _fail(f"{group}.{key}", value, why)
    for key, value in (
        ("optimizer.betas", cfg.optimizer.get("betas")),
        ("schedule.milestones", cfg.schedule.get("milestones")),
    ):
        if value is None:
            continue
        numbers = isinstance(value, ListConfig) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        )
        if key.endswith("betas") and not (numbers and len(value) == 2 and all(0 <= b < 1 for b in value)):
            _fail(key, value, "it must be two decay rates in [0, 1), e.g. [0.9,0.999]")
        if key.endswith("milestones") and not (numbers and all(isinstance(m, int) and m >= 1 for m in value)):
            _fail(key, value, "it must be a list of epochs (positive integers), e.g. [10,15]")
    kept = cfg.data.source.get("keep_classes")
    if kept is not None and not (
        isinstance(kept, ListConfig)
        and len(kept) >= 2
        and len(set(kept)) == len(kept)
        and all(isinstance(c, int) and 0 <= c <= 9 for c in kept)
    ):
        _fail("data.source.keep_classes", kept, "it must list 2 or more distinct labels in 0..9, e.g. [5,6,7,8,9]")
    for key in ("hidden", "channels"):
        widths = cfg.model.get(key)
        if widths is not None:
            if not isinstance(widths, ListConfig) or not all(isinstance(w, int) and w > 0 for w in widths):
                _fail(f"model.{key}", widths, "it must be a list of positive integers, e.g. [64,64]")
    mlp = str(cfg.model.get("_target_", "")).endswith(".MLP")
    if cfg.regularization.hidden_noise > 0 and not mlp:
        _fail(
            "regularization.hidden_noise", cfg.regularization.hidden_noise, "noise on hidden activations is model=mlp's"
        )
    rates = cfg.model.get("dropout")
    if isinstance(rates, ListConfig):  # one rate per hidden layer: the MLP's
        hidden = cfg.model.get("hidden")
        if not mlp:
            _fail("model.dropout", rates, "a list of rates (one per hidden layer) is model=mlp's; here give one rate")
        numbers = all(isinstance(r, (int, float)) and not isinstance(r, bool) and 0 <= r < 1 for r in rates)
        if not numbers or hidden is None or len(rates) != len(hidden):
            _fail(
                "model.dropout",
                rates,
                f"it must be one rate, or one rate in [0, 1) per hidden layer ({len(hidden or [])} here), e.g. "
                f"[{','.join(['0.5'] * len(hidden or [1]))}]",
            )


SEED_MAX = 2**32 - 1  # numpy's seed range (torch's is wider): every generator nnlab seeds takes it
BYTES_PER_POINT = 128  # a toy point as generated, split and preprocessed (float64 draws, copies), generously
BYTES_PER_PARAMETER = 16  # fp32 weights, gradients and two optimizer moments


def _check_limits(cfg: DictConfig, trains: bool = True) -> None:
    """What torch would fail on mid-run, refused before any folder exists: seeds out of range, data or
    models larger than this machine's memory, optimizer settings torch's own constructor rejects."""
    for key, value in (("trainer.seed", cfg.trainer.seed), ("data.source.seed", cfg.data.source.get("seed"))):
        if isinstance(value, int) and not 0 <= value <= SEED_MAX:
            _fail(key, value, f"a seed is a whole number in 0..{SEED_MAX} (the range numpy and torch both take)")
    memory = _memory_bytes()
    points = sum(int(cfg.data.source.get(k) or 0) for k in ("n_train", "n_test"))
    if points * BYTES_PER_POINT > memory:
        _fail(
            "data.source.n_train",
            cfg.data.source.get("n_train"),
            f"{points:,} points need about "
            f"{points * BYTES_PER_POINT / 2**30:,.0f} GiB, more than this machine's {memory / 2**30:.0f} GiB of memory",
        )
    widths = [w for w in (cfg.model.get("hidden") or []) if isinstance(w, int)]
    sizes = [3 * 32 * 32, *widths, 10]  # the largest input nnlab's data sets have
    parameters = sum(a * b for a, b in zip(sizes, sizes[1:]))
    if parameters * BYTES_PER_PARAMETER > memory:
        _fail(
            "model.hidden",
            list(widths),
            f"about {parameters:,} parameters need {parameters * BYTES_PER_PARAMETER / 2**30:,.0f} "
            f"GiB with their gradients and optimizer state, more than this machine's {memory / 2**30:.0f} GiB",
        )
    if trains:
        _check_optimizer_builds(cfg.optimizer)


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume plenty, torch will say
        return 2**50


_BUILT: set[str] = set()  # optimizer settings that built once in this process


def _check_optimizer_builds(node: DictConfig) -> None:
    """Build the optimizer on one throw-away parameter: torch's constructor checks its settings (nesterov
    needs momentum > 0 and no dampening, betas, eps, ...), and its complaint becomes one paragraph here."""
    import torch
    from hydra.utils import instantiate

    key = repr(OmegaConf.to_container(node, resolve=True))
    if key in _BUILT:  # a sweep over seeds checks the same optimizer once, not once per job
        return
    try:
        instantiate(node)([torch.zeros(1, requires_grad=True)])
        _BUILT.add(key)
    except Exception as e:  # noqa: BLE001  (whatever torch raises for a setting it rejects)
        settings = ", ".join(f"optimizer.{k}={v}" for k, v in node.items() if not str(k).startswith("_"))
        raise ConfigError(
            f"the optimizer {node._target_} cannot be built with {settings}: torch says "
            f'"{_first_line(e)}". Change the setting it names.'
        ) from None


def _check_prune(p: DictConfig) -> None:
    _choice("prune.scope", p.scope, PRUNE_SCOPES)
    if not (isinstance(p.amount, (int, float)) and 0 <= p.amount < 1):
        _fail("prune.amount", p.amount, "it is the fraction of the weights pruned: at least 0, below 1")
    if p.source is not None:
        from nnlab.run_files.checkpoint import of_run

        if not of_run(str(p.source)).is_file():
            _fail("prune.source", p.source, "there is no run directory with checkpoints, nor a checkpoint file, there")


def _check_transfer(t: DictConfig) -> None:
    _choice("transfer.mode", t.mode, TRANSFER_MODES)
    _positive("transfer.reused_lr_factor", t.reused_lr_factor)
    _positive("transfer.frozen_epochs", t.frozen_epochs)
    if t.init_from and t.mode != "none":
        from nnlab.run_files.checkpoint import of_run

        if not of_run(str(t.init_from)).is_file():
            _fail(
                "transfer.init_from",
                t.init_from,
                "there is no run directory with checkpoints, nor a checkpoint file, there",
            )


def _check_combinations(cfg: DictConfig) -> None:
    from nnlab import metrics
    from nnlab.data import describe

    kind, classes = describe(cfg.data.source)
    if cfg.trainer.batch_size == 1 and (cfg.model.get("batch_norm") or cfg.model._target_.endswith(".ResNet18")):
        raise ConfigError(
            "trainer.batch_size=1 (online learning) cannot go with batch norm, which normalizes each unit "
            "over the batch: a batch of one has no spread. Use model.batch_norm=false, or a batch of 2 or more."
        )
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
        _fail(
            "loss.output",
            cfg.loss.output,
            "an output link is for regression targets (data=sine, ripple, bump); "
            "classification reads the outputs as scores",
        )
    metric = cfg.early_stopping.metric.split("/")[0]
    if metric not in ("loss", "last") and metric not in metrics.names(kind):
        task = "regression" if kind == "regression" else "classification"
        _fail(
            "early_stopping.metric",
            cfg.early_stopping.metric,
            f"{task} logs loss, {', '.join(metrics.names(kind))}; e.g. loss/val or {metrics.score(kind)}/val",
        )
    n_train = cfg.data.source.get("n_train")
    if n_train is not None and round(n_train * (1 - cfg.data.val_fraction)) < 2:
        _fail(
            "data.source.n_train",
            n_train,
            f"with data.val_fraction={cfg.data.val_fraction} fewer than 2 training points remain",
        )
    if kind != "images" and cfg.data.augment:
        _fail("data.augment", True, "augmentation is defined for image data (mnist, cifar10) only")
    if cfg.data.preprocess in PROJECTIONS and not cfg.model._target_.endswith(".MLP"):
        _fail(
            "data.preprocess",
            cfg.data.preprocess,
            "it projects each example onto principal components, a flat vector: model=mlp takes it, a conv net "
            "needs the image (use standardize)",
        )
    if cfg.prune.source is not None and cfg.transfer.init_from and cfg.transfer.mode != "none":
        _fail(
            "prune.source",
            cfg.prune.source,
            "transfer.init_from already gives the starting weights; prune a run or transfer from one, not both",
        )
    if cfg.prune.source is not None and cfg.pretrain.method != "none":
        _fail("prune.source", cfg.prune.source, "the pruned run's weights are the start: pretrain.method=none")
    t = cfg.transfer
    if t.mode == "freeze_then_fine_tune" and t.init_from and t.frozen_epochs >= cfg.trainer.epochs:
        _fail(
            "transfer.frozen_epochs",
            t.frozen_epochs,
            f"with trainer.epochs={cfg.trainer.epochs} the reused layers would never unfreeze: fewer frozen epochs "
            "than trainer.epochs (or transfer.mode=feature_extraction)",
        )
    if kind != "regression" and cfg.data.target_scaling != "none":
        _fail("data.target_scaling", cfg.data.target_scaling, "it scales regression targets (data=sine, ripple, bump)")
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
            "there is no validation split (data.val_fraction=0) to "
            "watch; train on the whole training set with early_stopping.metric=last (the last epoch's model is the one "
            "tested, as the published Keras runs report), monitor loss/train, or hold out data",
        )
    if cfg.early_stopping.metric == "last" and cfg.early_stopping.patience is not None:
        _fail(
            "early_stopping.patience",
            cfg.early_stopping.patience,
            "early_stopping.metric=last watches no metric, "
            "so nothing can stop the run early; set early_stopping.patience=null, or watch a metric (e.g. loss/val)",
        )


def _check_pretrain(cfg: DictConfig) -> None:
    p = cfg.pretrain
    _choice("pretrain.method", p.method, PRETRAIN_METHODS)
    _positive("pretrain.epochs", p.epochs)
    _positive("pretrain.unlabeled", p.unlabeled, allow_zero=True)
    if p.unlabeled and (p.method != "autoencoder" or cfg.data.subset is None):
        _fail(
            "pretrain.unlabeled",
            p.unlabeled,
            "the autoencoders (pretrain.method=autoencoder) learn from that many training images after the labelled "
            "data.subset, without their labels: set both",
        )
    if p.method == "none":
        return
    if not cfg.model._target_.endswith(".MLP") or not cfg.model.get("hidden"):
        _fail(
            "pretrain.method",
            p.method,
            "greedy layer-wise pretraining is defined for model=mlp with at least one hidden layer (model.hidden)",
        )
    if cfg.transfer.init_from and cfg.transfer.mode != "none":
        _fail(
            "pretrain.method",
            p.method,
            "transfer.init_from already gives the starting weights; pretrain or transfer, not both",
        )
