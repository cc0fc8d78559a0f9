"""Structured configs: the types of the non-`_target_` parts of the config, checked by Hydra at compose
time (`trainer.epochs=abc` fails there). The values and what each one means are written once, in
conf/train.yaml; validate.py checks ranges and the rules between keys.

The `_target_` groups (model, activation, init, optimizer, schedule, loss, data.source) are free-form
nodes, checked by validate() against the signature of their target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from nnlab.metrics import ALL as ALL_METRICS

# The choices of the string-valued keys below, declared once (validate.py checks them).
DEVICES = ("auto", "cpu", "cuda", "mps")  # trainer.device (also cuda:N)
PRECISIONS = ("fp32", "bf16", "fp16")  # trainer.precision
PROJECTIONS = ("pca", "whiten")  # data.preprocess values that project the features onto principal components
PREPROCESS = ("none", "center", "standardize", *PROJECTIONS)  # data.preprocess
TARGET_SCALING = ("none", "standardize", "minmax")  # data.target_scaling (regression targets)
# early_stopping.metric: what picks the `best` checkpoint (and stops early); `last`: the last epoch, no early
# stopping (training on the whole training set, data.val_fraction=0, as the published Keras runs report)
MONITORED = (*(f"{m}/{split}" for m in ALL_METRICS for split in ("val", "train")), "last")
PRETRAIN_METHODS = ("none", "supervised", "autoencoder")  # pretrain.method (nnlab/pretrain.py)
PRUNE_SCOPES = ("global", "layer")  # prune.scope
TRANSFER_MODES = (
    "fine_tune",
    "feature_extraction",
    "freeze_then_fine_tune",
    "none",
)  # transfer.mode (nnlab/transfer.py)
ON_FAILURE = ("continue", "stop")  # sweep.on_failure
RUN_FIGURES = ("final", "all", "none")  # sweep.run_figures
EACH_RUN = ("line", "full")  # sweep.each_run
LIGHT = ("auto", "on", "off")  # sweep.light: auto is on for a stack of more than LIGHT_ABOVE members
LIGHT_ABOVE = 8
FULL_BATCH = "full"  # trainer.batch_size: the whole training split in one batch (full-batch gradient descent)


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int | str = MISSING  # a number, or FULL_BATCH
    device: str = MISSING
    seed: int = MISSING
    deterministic: bool = MISSING
    precision: str = MISSING
    compile: bool = MISSING
    log_every: int = MISSING
    eval_every: int = MISSING
    boundary_every: int = MISSING
    eval_batch_size: int = MISSING
    progress: bool = MISSING
    checkpoint_every: int = MISSING
    keep_checkpoints: int = MISSING
    channels_last: bool | None = MISSING
    threads: int | None = MISSING


@dataclass
class DataConfig:
    source: Any = MISSING
    val_fraction: float = MISSING
    preprocess: str = MISSING
    subset: int | None = MISSING
    augment: bool = MISSING
    target_scaling: str = "none"  # TARGET_SCALING (regression; listed in the regression sets' files)
    components: int | None = None  # principal components preprocess=pca and whiten keep (None: all)


@dataclass
class RegularizationConfig:
    l1: float = MISSING
    input_noise: float = MISSING
    clip_grad_norm: float | None = MISSING
    clip_grad_value: float | None = MISSING
    max_norm: float | None = MISSING
    activity_l1: float = MISSING
    hidden_noise: float = 0.0  # a default here too: configs written before it existed still load


@dataclass
class EarlyStoppingConfig:
    metric: str = MISSING
    patience: int | None = MISSING
    min_delta: float = MISSING


@dataclass
class DiagnosticsConfig:
    every: int = MISSING
    probe_size: int = MISSING
    histograms_every: int = MISSING
    saturation_eps: float = MISSING


@dataclass
class AlarmsConfig:
    enabled: bool = MISSING
    initial_loss_tolerance: float = MISSING
    divergence_factor: float = MISSING
    flat_after_steps: int = MISSING
    flat_min_drop: float = MISSING
    grad_ratio_low: float = MISSING
    grad_ratio_high: float = MISSING
    dead_fraction: float = MISSING
    saturated_fraction: float = MISSING
    update_ratio_low: float = MISSING
    update_ratio_high: float = MISSING
    overfit_gap: float = MISSING
    underfit_acc: float = MISSING


@dataclass
class CheckConfig:
    l2: float = MISSING
    tiny_subset: int = MISSING
    overfit_steps: int = MISSING
    overfit_acc: float = MISSING
    overfit_r2: float = MISSING


@dataclass
class LRFindConfig:
    min_lr: float = MISSING
    max_lr: float = MISSING
    steps: int = MISSING
    smoothing: float = MISSING
    explode_factor: float = MISSING


@dataclass
class DoctorConfig:
    seeds: int = 5  # defaults here too: configs written before it existed still load
    candidates: int = 4


@dataclass
class BatchSizeFindConfig:
    start: int | None = MISSING
    max_memory_mb: float | None = MISSING
    max_batch: int | None = MISSING


@dataclass
class PretrainConfig:
    method: str = MISSING
    epochs: int = MISSING
    unlabeled: int = 0  # (a default: the config of a run from before it loads as it trained)


@dataclass
class PruneConfig:  # defaults: the config of a run from before pruning loads as it trained (none)
    source: str | None = None
    amount: float = 0.5
    scope: str = "global"


@dataclass
class TransferConfig:
    init_from: str | None = MISSING
    mode: str = MISSING
    reused_lr_factor: float = MISSING
    frozen_epochs: int = 5  # (a default: the config of a run from before it loads as it trained)


@dataclass
class SweepConfig:
    on_failure: str = MISSING
    run_figures: str = "final"  # a default here too: configs written before it existed still load
    each_run: str = "line"
    light: str = "auto"  # LIGHT


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
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    batch_size_find: BatchSizeFindConfig = field(default_factory=BatchSizeFindConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    resume: str | None = MISSING
    overwrite: bool = False
    model: Any = MISSING
    activation: Any = MISSING
    init: Any = MISSING
    optimizer: Any = MISSING
    schedule: Any = MISSING
    loss: Any = MISSING


def register_configs() -> None:
    """nnlab's schema (Hydra finds the launcher and sweeper, hydra/launcher=batched and hydra/sweeper=grid,
    itself: hydra_plugins/nnlab_launcher, imported by its plugin scan)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="nnlab_schema", node=NNLabConfig)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}; lists become strings."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif value is None or isinstance(value, (list, tuple)):
            out[name] = str(value)
        else:
            out[name] = value
    return out
