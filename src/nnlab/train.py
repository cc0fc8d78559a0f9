"""Setup (the composed config -> torch objects, in one place) and the training loop (plain PyTorch).

setup() is the only code that reads the config; fit() receives torch objects and plain dataclasses.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nnlab import checkpoint, diagnostics
from nnlab.config import AlarmsConfig, DiagnosticsConfig, EarlyStoppingConfig, RegularizationConfig, TrainerConfig
from nnlab.console import TrainingProgress, summary_table
from nnlab.data import describe
from nnlab.data.loader import Data, Split, batch_indices, prepare, steps_per_epoch
from nnlab.diagnostics import Diagnostics
from nnlab.optim import per_epoch
from nnlab.tracking import Tracker, flatten, write_summary


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
    config: dict = field(default_factory=dict)  # the resolved config, saved with checkpoints
    notes: list[str] = field(default_factory=list)  # what setup changed or noticed, for the log


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
        "torch.use_deterministic_algorithms(True)",
        "torch.backends.cudnn.benchmark=False",
        "torch.backends.cudnn.deterministic=True",
        f"CUBLAS_WORKSPACE_CONFIG={os.environ['CUBLAS_WORKSPACE_CONFIG']}",
    ]


def setup(cfg: DictConfig) -> Experiment:
    trainer: TrainerConfig = OmegaConf.to_object(cfg.trainer)
    notes = seed_everything(trainer.seed, trainer.deterministic)
    device = resolve_device(trainer.device)

    kind, num_classes = describe(cfg.data.source)
    augment = None
    if cfg.data.augment:
        from nnlab.data.augment import FOR_DATASET

        augment = FOR_DATASET[cfg.data.source._target_.rpartition(".")[2]]
    load = instantiate(cfg.data.source, _partial_=True)  # called here so that its errors reach the user as they are
    data = prepare(
        load(),
        kind=kind,
        num_classes=num_classes,
        val_fraction=cfg.data.val_fraction,
        preprocess=cfg.data.preprocess,
        subset=cfg.data.subset,
        augment=augment,
        seed=trainer.seed,
        device=device,
    )

    torch.manual_seed(trainer.seed)  # the weights do not depend on how much random data came before
    loss_fn = instantiate(cfg.loss).to(device)
    activation = instantiate(cfg.activation)
    model = instantiate(
        cfg.model,
        in_shape=data.in_shape,
        num_outputs=loss_fn.num_outputs(num_classes),
        activation=activation,
        _convert_="all",
    )
    instantiate(cfg.init)(model, activation=activation)
    model.to(device)
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    spe = steps_per_epoch(len(data.train), trainer.batch_size)
    scheduler = instantiate(cfg.schedule)(optimizer, total_steps=spe * trainer.epochs, steps_per_epoch=spe)
    if trainer.compile:
        model = torch.compile(model)
    return Experiment(
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        device=device,
        trainer=trainer,
        regularization=OmegaConf.to_object(cfg.regularization),
        early_stopping=OmegaConf.to_object(cfg.early_stopping),
        diagnostics=OmegaConf.to_object(cfg.diagnostics),
        alarms=OmegaConf.to_object(cfg.alarms),
        activation_type=type(activation()),
        steps_per_epoch=spe,
        config=OmegaConf.to_container(cfg, resolve=True),
        notes=notes,
    )


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def train_step(exp: Experiment, x: torch.Tensor, y: torch.Tensor, scaler, weights):
    """One optimizer step. Returns (outputs, loss, global gradient norm), all still on the device."""
    reg = exp.regularization
    with autocast(exp.device, exp.trainer.precision):
        out = exp.model(x)
        loss = exp.loss_fn(out, y)
        if reg.l1 > 0:
            loss = loss + reg.l1 * sum(w.abs().sum() for w in weights)
    exp.optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(exp.optimizer)  # clip and measure true gradients, not scaled ones
    if reg.clip_grad_value is not None:
        nn.utils.clip_grad_value_(exp.model.parameters(), reg.clip_grad_value)
    norm = nn.utils.clip_grad_norm_(exp.model.parameters(), reg.clip_grad_norm or math.inf)  # also measures
    scaler.step(exp.optimizer)
    scaler.update()
    if not per_epoch(exp.scheduler):
        exp.scheduler.step()
    return out, loss, norm


@torch.no_grad()
def evaluate(exp: Experiment, split: Split) -> dict[str, float]:
    """Mean loss and accuracy over a split, in batches, in eval mode (one host sync at the end)."""
    exp.model.eval()
    total = torch.zeros(2, device=exp.device)
    size = exp.trainer.eval_batch_size
    for start in range(0, len(split), size):
        x, y = split.x[start : start + size], split.y[start : start + size]
        with autocast(exp.device, exp.trainer.precision):
            out = exp.model(x)
            loss = exp.loss_fn(out, y).float()
        total += torch.stack([loss * len(y), (exp.loss_fn.predict(out) == y).sum().float()])
    exp.model.train()
    loss, correct = total.tolist()
    return {"loss": loss / len(split), "acc": correct / len(split)}


class Monitor:
    """Best value of the monitored metric, and early stopping on it."""

    def __init__(self, cfg: EarlyStoppingConfig):
        self.metric, self.patience, self.min_delta = cfg.metric, cfg.patience, cfg.min_delta
        self.sign = 1.0 if "loss" in self.metric else -1.0  # losses go down, accuracies up
        self.best, self.best_epoch, self.bad_epochs = math.inf, None, 0

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record an epoch; True when it is the best so far."""
        value = self.sign * metrics[self.metric]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience


def fit(exp: Experiment, run_dir: Path, tracker: Tracker) -> dict[str, Any]:
    """Train, validate every eval_every epochs, keep `last` and `best` checkpoints, test at the end."""
    t, data, model = exp.trainer, exp.data, exp.model
    shuffle = torch.Generator().manual_seed(t.seed)
    noise = torch.Generator(device=exp.device).manual_seed(t.seed)  # augmentation and input noise
    scaler = torch.amp.GradScaler(exp.device.type, enabled=t.precision == "fp16")
    probe = (data.train.x[: exp.diagnostics.probe_size], data.train.y[: exp.diagnostics.probe_size])
    diag = Diagnostics(model, exp.loss_fn, exp.activation_type, probe, data.num_classes, exp.diagnostics,
                       exp.alarms, tracker, t.log_every, exp.optimizer)  # fmt: skip
    weights = [m.weight for _, m in diag.layers]
    monitor, step, epoch, status, started = Monitor(exp.early_stopping), 0, 0, "ok", time.perf_counter()
    ckpt_dir, metrics = run_dir / "checkpoints", {}
    diag.start()
    checkpoint.save(ckpt_dir / "last.pt", _state(exp, 0, 0, {}))  # a good checkpoint exists from the start
    progress = TrainingProgress(t.epochs, exp.steps_per_epoch, enabled=t.progress)
    model.train()
    with progress:
        for epoch in range(1, t.epochs + 1):
            epoch_start = time.perf_counter()
            totals, count = torch.zeros(2, device=exp.device), 0  # loss sum, correct: read once per epoch
            for idx in batch_indices(len(data.train), t.batch_size, shuffle, exp.device):
                x, y = data.train.x[idx], data.train.y[idx]
                if data.augment is not None:
                    x = data.augment(x, noise)
                if exp.regularization.input_noise > 0:
                    x = x + exp.regularization.input_noise * torch.randn(x.shape, generator=noise, device=x.device)
                step += 1
                diag.before_step(step)
                out, loss, norm = train_step(exp, x, y, scaler, weights)
                totals += torch.stack([loss.detach().float() * len(y), (exp.loss_fn.predict(out) == y).sum().float()])
                count += len(y)
                if diag.after_step(step, epoch, loss, norm):
                    status = "diverged"  # logs stay; `last` is the end of the previous epoch
                    break
                progress.batch(diag.recent_loss if step % t.log_every == 0 else None)
            if status == "diverged":
                break

            metrics = _end_epoch(exp, tracker, epoch, step, totals, count, time.perf_counter() - epoch_start)
            state = _state(exp, epoch, step, metrics)
            checkpoint.save(ckpt_dir / "last.pt", state)
            if monitor.metric in metrics and monitor.update(epoch, metrics):
                checkpoint.save(ckpt_dir / "best.pt", state)
            diag.end_epoch(epoch, step, last_epoch=epoch == t.epochs or monitor.should_stop)
            progress.epoch(epoch, metrics)
            if monitor.should_stop:
                break

    alarms = diag.finish(metrics, step)
    return _finish(exp, run_dir, tracker, monitor, metrics, epoch, step, time.perf_counter() - started, status, alarms, diag.initial)


def _end_epoch(exp: Experiment, tracker: Tracker, epoch: int, step: int, totals, count: int, elapsed: float) -> dict:
    """The epoch's metrics (validation at its cadence), logged; the plateau schedule; the decision boundary."""
    t, data = exp.trainer, exp.data
    loss_sum, correct = totals.tolist()
    metrics = {"loss/train": loss_sum / count, "acc/train": correct / count}
    if data.val is not None and (epoch % t.eval_every == 0 or epoch == t.epochs):
        val = evaluate(exp, data.val)
        metrics.update({"loss/val": val["loss"], "acc/val": val["acc"]})
    metrics.update({"time/epoch_s": elapsed, "throughput/examples_per_s": count / elapsed})
    tracker.scalars(step, metrics, epoch)
    if per_epoch(exp.scheduler) and "loss/val" in metrics:
        exp.scheduler.step(metrics["loss/val"])
    if data.kind == "points" and (epoch % t.boundary_every == 0 or epoch == t.epochs):
        image = diagnostics.decision_boundary(exp.model, exp.loss_fn.predict, data.train.x, data.train.y)
        tracker.image("decision_boundary", image, step)
    return metrics


def _bare(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # unwrap torch.compile


def _state(exp: Experiment, epoch: int, step: int, metrics: dict[str, float]) -> dict[str, Any]:
    return {
        "model": _bare(exp.model).state_dict(),
        "optimizer": exp.optimizer.state_dict(),
        "scheduler": exp.scheduler.state_dict(),
        "epoch": epoch,
        "step": step,
        "metrics": metrics,
        "config": exp.config,
    }


def _finish(exp, run_dir, tracker, monitor, last_metrics, epoch, step, wall_time, status, alarms, initial_loss):
    """Test the best checkpoint (model selection on the monitored metric), log, write summary.json."""
    best_path = run_dir / "checkpoints" / "best.pt"
    final = {k: v for k, v in last_metrics.items() if k.startswith(("loss/", "acc/"))}
    if best_path.exists() or status == "ok":
        if best_path.exists():
            _bare(exp.model).load_state_dict(checkpoint.load(best_path, map_location=exp.device)["model"])
        test = evaluate(exp, exp.data.test)
        final.update({"loss/test": test["loss"], "acc/test": test["acc"]})
        tracker.scalars(step, {"loss/test": test["loss"], "acc/test": test["acc"]}, epoch)
    hparams = flatten(exp.config)
    tracker.hparams(hparams, {k: final[k] for k in ("loss/test", "acc/test", "loss/val", "acc/val") if k in final})
    summary = {
        "status": status,
        "metrics": final,
        "initial_loss": initial_loss,
        "best_epoch": monitor.best_epoch,
        "monitor": monitor.metric,
        "epochs_run": epoch,
        "steps": step,
        "stopped_early": monitor.should_stop,
        "alarms": alarms,
        "wall_time_s": wall_time,
        "device": str(exp.device),
        "torch_threads": torch.get_num_threads(),
        "seed": exp.trainer.seed,
        "run_dir": str(run_dir),
        "checkpoints": {"last": "checkpoints/last.pt", "best": "checkpoints/best.pt" if best_path.exists() else None},
    }
    write_summary(run_dir, summary)
    return summary


def worst_objective(metric: str) -> float:
    """What a sweeper sees for a run that diverged or failed: the worst possible value."""
    return math.inf if "loss" in metric else 0.0


def objective(summary: dict[str, Any], metric: str) -> float:
    """The value a sweeper optimizes: the run's final `metric` (the early_stopping metric), or the worst
    value where the run did not finish well."""
    value = summary["metrics"].get(metric)
    if summary["status"] != "ok" or value is None or not math.isfinite(value):
        return worst_objective(metric)
    return value


def run(cfg: DictConfig, run_dir: str | Path, choices: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """The `nnlab train` job: set up, train, report. Returns summary.json's content."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    exp = setup(cfg)
    if choices:
        exp.config["choices"] = dict(choices)
    tracker = Tracker(run_dir)
    try:
        tracker.text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=True) + "\n```")
        for note in exp.notes:
            tracker.text("notes", note)
        summary = fit(exp, run_dir, tracker)
    finally:
        tracker.close()
    diagnostics.curves_figure([json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()], run_dir / "curves.png")
    summary_table(summary)
    return summary
