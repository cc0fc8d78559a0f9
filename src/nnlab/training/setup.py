"""Setup: the composed, validated config -> the run's torch objects, in one place.

setup() is the only code that reads the config for a run; it returns an Experiment of torch objects and
plain dataclasses, which the loop (train.py) and the other commands (check, lr-find, batch-size-find,
ensemble) use. Optimizers and schedules are `_partial_` factories called here with the run-time facts.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nnlab.config.schema import (
    FULL_BATCH,
    AlarmsConfig,
    DiagnosticsConfig,
    EarlyStoppingConfig,
    PretrainConfig,
    RegularizationConfig,
    TrainerConfig,
)
from nnlab.data import describe
from nnlab.data.loader import Data, Images, prepare, steps_per_epoch
from nnlab.engine.update import stack_of_one, update_mode
from nnlab.errors import ConfigError
from nnlab.nn import bare
from nnlab.training import transfer
from nnlab.training.diagnostics import hidden_activations, weight_layers


@dataclass
class Experiment:
    """Everything fit() needs, built from the config by setup()."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    data: Data
    device: torch.device
    trainer: TrainerConfig
    regularization: RegularizationConfig
    early_stopping: EarlyStoppingConfig
    diagnostics: DiagnosticsConfig
    alarms: AlarmsConfig
    activation_type: type
    steps_per_epoch: int
    pretrain: PretrainConfig
    make_optimizer: Any = None  # the `optimizer` group as a function of parameters (for pretraining stages)
    config: dict = field(default_factory=dict)  # the resolved config, saved with checkpoints
    activities: list = field(default_factory=list)  # hidden activations of the last training forward pass
    params: list = field(default_factory=list)  # the trainable parameters (listing them per step costs)
    weights: list = field(default_factory=list)  # the trainable layers' weights: L1 penalty, max-norm constraint
    step: Any = None  # the step after the backward pass as a stack of one (engine/update.py); None: torch.optim's
    update: str = "engine"  # which step: the engine's, or "torch.optim (why)": its own step() (engine/update.py)
    notes: list[str] = field(default_factory=list)  # what setup changed or noticed, for the log
    masks: list = field(default_factory=list)  # prune.source: (weight, mask) pairs, the zeros kept zero each step
    reused: list = field(default_factory=list)  # freeze_then_fine_tune: the reused parameters, frozen at first
    frozen_epochs: int = 0  # ... for this many epochs (transfer.freeze)


def target_scaling(y: torch.Tensor, how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift, scale) per target from the training split's targets [N, d]: standardize (mean, std) or minmax
    (min, max - min); the loss trains on (y - shift) / scale."""
    y = y.float()
    if how == "standardize":
        return y.mean(0), y.std(0).clamp_min(1e-8)
    low = y.min(0).values
    return low, (y.max(0).values - low).clamp_min(1e-8)


DEFAULT_THREADS = torch.get_num_threads()  # torch's own default (one per core), before a run changes it


def cpu_threads(threads: int | None, kind: str, cpu_share: int | None = None) -> int:
    """trainer.threads, else 1 for the toy sets (tiny tensors: splitting an op across cores costs more
    than it saves), else this job's share of the cores (`cpu_share`, given to the jobs of a parallel
    launcher), else torch's default."""
    if threads is not None:
        return threads
    return 1 if kind != "images" else (cpu_share or DEFAULT_THREADS)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> list[str]:
    """Seed python, numpy and torch (all devices); with `deterministic`, switch torch to its
    deterministic algorithms. Returns what was changed, in words."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    if not deterministic:
        return []
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return [
        "trainer.deterministic changed: torch.use_deterministic_algorithms(True); "
        "torch.backends.cudnn.benchmark=False; torch.backends.cudnn.deterministic=True; "
        f"CUBLAS_WORKSPACE_CONFIG={os.environ['CUBLAS_WORKSPACE_CONFIG']}"
    ]


_LOADED: dict[str, tuple] = {}  # the image set loaded last: the runs of a stack share its tensors


def load_source(source: DictConfig, kind: str) -> tuple:
    """The `data.source` config's raw tensors (x_train, y_train, x_test, y_test); an image set is read
    once per process for the runs that ask for the same one (their splits index it: loader.Images)."""
    key = repr(OmegaConf.to_container(source, resolve=True))
    if kind == "images" and key in _LOADED:
        return _LOADED[key]
    raw = build(source)  # (its factory called here: its errors reach the user as they are)
    if kind == "images":
        _LOADED.clear()
        _LOADED[key] = raw
    return raw


_FACTORIES: dict[str, Any] = {}  # a group's node -> its factory (the members of a stack share them)


def build(node: DictConfig, **kwargs) -> Any:
    """instantiate(node, **kwargs) as Hydra does (`_convert_="all"`: plain lists, so checkpoints load
    weights-only; a `_partial_` node gives its factory), through the node's factory made once per content:
    a stack's members, whose groups differ in their seeds at most, each build their own objects from one
    factory (Hydra's instantiate costs ~1-2 ms a call: 7 a run). Safe to share: no `_target_` below a
    group's top (targets.check_no_nested_targets), so a factory holds no object, only settings."""
    key = repr(OmegaConf.to_container(node, resolve=True))
    factory = _FACTORIES.get(key)
    if factory is None:
        if len(_FACTORIES) > 256:
            _FACTORIES.clear()
        factory = _FACTORIES[key] = instantiate(node, _partial_=True, _convert_="all")
    return factory if node.get("_partial_") else factory(**kwargs)


def build_model(cfg: DictConfig, in_shape, num_outputs: int, activation) -> nn.Module:
    """The `model` config as a torch module, initialized by `init`."""
    model = build(cfg.model, in_shape=in_shape, num_outputs=num_outputs, activation=activation)  # (raises as itself)
    if not getattr(model, "has_own_init", False):
        build(cfg.init)(model, activation=activation)
    if cfg.regularization.hidden_noise > 0:
        model.add_hidden_noise(cfg.regularization.hidden_noise)  # (validate: model=mlp's)
    return model


def _updates(cfg: DictConfig, model: nn.Module, reused: set, spe: int) -> tuple:
    """(the optimizer's factory, the optimizer over the model's parameter groups (transfer's rates), the
    schedule, why the engine's stacked update does not apply, or None)."""
    tr, epochs = cfg.transfer, cfg.trainer.epochs
    groups = transfer.parameter_groups(model, reused, tr.mode, cfg.optimizer.lr, tr.reused_lr_factor)
    make_optimizer = build(cfg.optimizer)  # plain lists (betas): checkpoints load weights-only
    optimizer = make_optimizer(groups)
    scheduler = build(cfg.schedule)(optimizer, total_steps=spe * epochs, steps_per_epoch=spe)
    return make_optimizer, optimizer, scheduler, update_mode(optimizer, cfg.trainer.precision)


def setup(cfg: DictConfig, cpu_share: int | None = None, shared: bool = False, trains: bool = True) -> Experiment:
    """Every torch object of a run, built from its validated config; `cpu_share`: this job's share of the
    CPU cores where a parallel launcher runs several at once (see trainer.threads); `shared`: a run of a
    stack, whose image set it shares with the others (loader.Images); `trains`: False for a trained run
    read back (load_run, figures): no optimizer nor schedule (torch.optim's first optimizer imports
    torch._dynamo, a second of start-up)."""
    config = OmegaConf.to_container(cfg, resolve=True)  # (its groups' settings as plain dataclasses below)
    trainer = TrainerConfig(**config["trainer"])
    notes = seed_everything(trainer.seed, trainer.deterministic)
    device = resolve_device(trainer.device)
    data = load_data(cfg, trainer, device, shared, cpu_share, notes)
    torch.manual_seed(trainer.seed)  # the weights do not depend on how much random data came before
    loss_fn = build(cfg.loss).to(device)
    if data.kind == "regression" and cfg.data.target_scaling != "none":
        loss_fn.scale_targets(*target_scaling(data.train.y, cfg.data.target_scaling))
        notes.append(
            f"data.target_scaling={cfg.data.target_scaling}: trained on scaled targets, measured in their units"
        )
    activation = build(cfg.activation)
    model = build_model(cfg, data.in_shape, loss_fn.num_outputs(data.num_classes), activation)
    model.to(device)
    _channels_last(model, data, trainer)
    reused, masks = starting_weights(cfg, model, notes)
    spe = steps_per_epoch(len(data.train), trainer.batch_size)
    make_optimizer, optimizer, scheduler, why = _updates(cfg, model, reused, spe) if trains else (None,) * 4
    activities: list[torch.Tensor] = []
    if cfg.regularization.activity_l1 > 0:

        def keep(module, inputs, output):
            if module.training:
                activities.append(output)

        for _, m in hidden_activations(model, type(activation())):
            m.register_forward_hook(keep)
    if trainer.compile:
        model = torch.compile(model)
    regularization = RegularizationConfig(**config["regularization"])
    weights = [m.weight for _, m in weight_layers(model) if m.weight.requires_grad]
    if why is not None:  # a mode of its own, said at the start: never a silent switch
        notes.append(f"update: torch.optim's own step() ({why}), not the engine's stacked form")
    tr = cfg.transfer
    return Experiment(
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        device=device,
        trainer=trainer,
        regularization=regularization,
        early_stopping=EarlyStoppingConfig(**config["early_stopping"]),
        diagnostics=DiagnosticsConfig(**config["diagnostics"]),
        alarms=AlarmsConfig(**config["alarms"]),
        activation_type=type(activation()),
        steps_per_epoch=spe,
        pretrain=PretrainConfig(**config["pretrain"]),
        make_optimizer=make_optimizer,
        config=config,
        activities=activities,
        params=[p for p in model.parameters() if p.requires_grad],
        weights=weights,
        step=None if why is not None else stack_of_one(optimizer, weights, regularization),
        update="engine" if why is None else f"torch.optim ({why})",
        notes=notes,
        masks=masks,
        reused=[p for n, p in model.named_parameters() if n in reused] if tr.mode == "freeze_then_fine_tune" else [],
        frozen_epochs=tr.frozen_epochs,
    )


def load_data(cfg: DictConfig, trainer: TrainerConfig, device, shared: bool, cpu_share, notes: list[str]) -> Data:
    """The run's data (loader.prepare) on its device, with the settings that need it seen: the principal
    components it can keep, and `trainer.batch_size=full` as the training split's size from here on."""
    kind, num_classes = describe(cfg.data.source)
    torch.set_num_threads(cpu_threads(trainer.threads, kind, cpu_share))
    augment = None
    if cfg.data.augment:
        from nnlab.data.augment import FOR_DATASET

        augment = FOR_DATASET[cfg.data.source._target_.rpartition(".")[2]]
    data = prepare(
        load_source(cfg.data.source, kind),
        kind=kind,
        num_classes=num_classes,
        val_fraction=cfg.data.val_fraction,
        preprocess=cfg.data.preprocess,
        subset=cfg.data.subset,
        augment=augment,
        seed=trainer.seed,
        device=device,
        shared=shared,
        components=cfg.data.components,
        unlabeled=cfg.pretrain.unlabeled if cfg.pretrain.method == "autoencoder" else 0,
    )
    features = None if data.projection is None else data.projection[0].shape[0]
    if features is not None and cfg.data.components is not None and cfg.data.components > features:
        raise ConfigError(
            f"data.components={cfg.data.components} is more than the data's {features} features: "
            "keep at most that many principal components."
        )
    if trainer.batch_size == FULL_BATCH:  # the number from here on: every step sees the whole training split
        trainer.batch_size = len(data.train)
        notes.append(f"trainer.batch_size={FULL_BATCH}: one step per epoch on all {len(data.train)} training examples")
    return data


def _channels_last(model: nn.Module, data: Data, trainer: TrainerConfig) -> None:
    """A conv net in NHWC memory layout, its images too (trainer.channels_last: null is on for them)."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()) or trainer.channels_last is False:
        return
    model.to(memory_format=torch.channels_last)  # NHWC: faster convolutions, on GPUs and CPUs alike
    for split in (data.train, data.val, data.test):
        if split is None:
            continue
        if isinstance(split.x, Images):
            split.x.channels_last = True  # its batches come out NHWC
        else:
            split.x = split.x.contiguous(memory_format=torch.channels_last)


def starting_weights(cfg: DictConfig, model: nn.Module, notes: list[str]) -> tuple[set[str], list]:
    """Where the weights start other than from `init`: another run's matching layers (transfer.init_from:
    the names reused), or all of a run's weights, pruned (prune.source: the (weight, mask) pairs)."""
    tr, reused, masks = cfg.transfer, set(), []
    if tr.init_from and tr.mode != "none":
        reused = transfer.load_matching(model, tr.init_from)
        notes.append(f"transfer.init_from: {len(reused)} parameter tensors reused ({tr.mode}), the output layer new")
    if cfg.prune.source is not None:
        p = cfg.prune
        masks = transfer.prune(model, p.source, p.amount, p.scope)
        kept = sum(int(m.sum()) for _, m in masks)
        notes.append(
            f"prune.source: the weights of {p.source}, {p.amount:.0%} pruned ({p.scope}): {kept} of "
            f"{sum(m.numel() for _, m in masks)} weights left"
        )
    return reused, masks


def model_summary(model: nn.Module) -> dict:
    """The model in numbers, for summary.json and TensorBoard: its class, parameter count (trainable too)
    and each leaf layer with its own count."""
    model = bare(model)
    layers = [
        {"name": n, "type": type(m).__name__, "parameters": sum(p.numel() for p in m.parameters(recurse=False))}
        for n, m in model.named_modules()
        if n and not any(True for _ in m.children())
    ]
    return {
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "layers": layers,
    }
