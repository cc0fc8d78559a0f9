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

from nnlab import checkpoint, diagnostics, transfer
from nnlab import metrics as task_metrics
from nnlab.config import (AlarmsConfig, DiagnosticsConfig, EarlyStoppingConfig, PretrainConfig, RegularizationConfig,
                          TrainerConfig)  # fmt: skip
from nnlab.console import TrainingProgress, summary_table
from nnlab.data import describe
from nnlab.data.loader import Data, Split, batch_indices, prepare, steps_per_epoch
from nnlab.diagnostics import Diagnostics
from nnlab.optim import per_epoch
from nnlab.tracking import Tracker, environment, flatten, write_summary


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
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    make_optimizer: Any = None  # the `optimizer` group as a function of parameters (for pretraining stages)
    config: dict = field(default_factory=dict)  # the resolved config, saved with checkpoints
    activities: list = field(default_factory=list)  # hidden activations of the last training forward pass
    params: list = field(default_factory=list)  # the trainable parameters (listing them per step costs)
    weights: list = field(default_factory=list)  # the trainable layers' weights: L1 penalty, max-norm constraint
    notes: list[str] = field(default_factory=list)  # what setup changed or noticed, for the log


DEFAULT_THREADS = torch.get_num_threads()  # torch's own default (one per core), before a run changes it
cpu_share: Optional[int] = None  # a parallel launcher's job: its share of the cores (see cli._share_cores)


def cpu_threads(threads: Optional[int], kind: str) -> int:
    """trainer.threads, else 1 for the toy sets (tiny tensors: splitting an op across cores costs more
    than it saves), else this job's share of the cores (torch's default outside parallel launchers)."""
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
    return ["trainer.deterministic changed: torch.use_deterministic_algorithms(True); "
            "torch.backends.cudnn.benchmark=False; torch.backends.cudnn.deterministic=True; "
            f"CUBLAS_WORKSPACE_CONFIG={os.environ['CUBLAS_WORKSPACE_CONFIG']}"]  # fmt: skip


def build_model(cfg: DictConfig, in_shape, num_outputs: int, activation) -> nn.Module:
    """The `model` config as a torch module (the transfer keys are read by setup), initialized by `init`."""
    model_cfg = OmegaConf.create({k: v for k, v in cfg.model.items() if k not in transfer.KEYS})
    try:
        model = instantiate(model_cfg, in_shape=in_shape, num_outputs=num_outputs, activation=activation, _convert_="all")
    except Exception as e:  # Hydra wraps what the model raised; a user error goes on as itself
        from nnlab.config import ConfigError

        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        raise
    if not getattr(model, "has_own_init", False):
        instantiate(cfg.init)(model, activation=activation)
    return model


def setup(cfg: DictConfig) -> Experiment:
    trainer: TrainerConfig = OmegaConf.to_object(cfg.trainer)
    notes = seed_everything(trainer.seed, trainer.deterministic)
    device = resolve_device(trainer.device)

    kind, num_classes = describe(cfg.data.source)
    torch.set_num_threads(cpu_threads(trainer.threads, kind))
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
    model = build_model(cfg, data.in_shape, loss_fn.num_outputs(num_classes), activation)
    model.to(device)
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if convolutional and trainer.channels_last is not False:  # null (auto) or true
        model.to(memory_format=torch.channels_last)  # NHWC: faster convolutions, on GPUs and CPUs alike
        for split in (data.train, data.val, data.test):
            if split is not None:
                split.x = split.x.contiguous(memory_format=torch.channels_last)
    mode, reused = cfg.model.get("transfer", "none"), set()
    if cfg.model.get("init_from") and mode != "none":
        reused = transfer.load_matching(model, cfg.model.init_from)
        notes.append(f"model.init_from: {len(reused)} parameter tensors reused ({mode}), the output layer new")
    groups = transfer.parameter_groups(model, reused, mode, cfg.optimizer.lr, cfg.model.get("reused_lr_factor", 1.0))
    make_optimizer = instantiate(cfg.optimizer)
    optimizer = make_optimizer(groups)
    spe = steps_per_epoch(len(data.train), trainer.batch_size)
    scheduler = instantiate(cfg.schedule)(optimizer, total_steps=spe * trainer.epochs, steps_per_epoch=spe)
    activities: list[torch.Tensor] = []
    if cfg.regularization.activity_l1 > 0:
        from nnlab.diagnostics import hidden_activations

        def keep(module, inputs, output):
            if module.training:
                activities.append(output)

        for _, m in hidden_activations(model, type(activation())):
            m.register_forward_hook(keep)
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
        pretrain=OmegaConf.to_object(cfg.pretrain),
        make_optimizer=make_optimizer,
        config=OmegaConf.to_container(cfg, resolve=True),
        activities=activities,
        params=[p for p in model.parameters() if p.requires_grad],
        weights=[m.weight for _, m in diagnostics.weight_layers(model) if m.weight.requires_grad],
        notes=notes,
    )


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def train_step(exp: Experiment, x: torch.Tensor, y: torch.Tensor, scaler):
    """One optimizer step. Returns (outputs, data loss, global gradient norm), all still on the device.
    The data loss is what is logged and watched; the L1 penalty only joins it for the gradient."""
    reg = exp.regularization
    exp.activities.clear()
    with autocast(exp.device, exp.trainer.precision):
        out = exp.model(x)
        loss = objective = exp.loss_fn(out, y)
        if reg.l1 > 0:
            objective = objective + reg.l1 * sum(w.abs().sum() for w in exp.weights)
        if reg.activity_l1 > 0:  # hidden activations, collected by forward hooks (see setup)
            objective = objective + reg.activity_l1 * sum(a.abs().sum() for a in exp.activities) / len(y)
    exp.optimizer.zero_grad(set_to_none=True)
    scaler.scale(objective).backward()
    scaler.unscale_(exp.optimizer)  # clip and measure true gradients, not scaled ones
    if reg.clip_grad_value is not None:
        nn.utils.clip_grad_value_(exp.params, reg.clip_grad_value)
    if reg.clip_grad_norm is not None:
        norm = nn.utils.clip_grad_norm_(exp.params, reg.clip_grad_norm)  # returns the norm before clipping
    else:
        norm = global_grad_norm(exp.params)
    scaler.step(exp.optimizer)
    scaler.update()
    if reg.max_norm is not None:  # each unit's incoming weight vector (a row; a filter) back inside the ball
        with torch.no_grad():
            for w in exp.weights:
                w.copy_(torch.renorm(w, 2, 0, reg.max_norm))
    if not per_epoch(exp.scheduler):
        exp.scheduler.step()
    return out, loss, norm


def global_grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients together, left on the device (clip_grad_norm_ without the clipping)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())


def batch_sums(exp: Experiment, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """[loss * n, the task's metric sums (nnlab/metrics.py)] for one batch, left on the device."""
    kind = exp.data.kind
    pred = task_metrics.prediction(kind, exp.loss_fn, out)
    return torch.cat([(loss.detach().float() * len(y)).reshape(1), task_metrics.sums(kind, pred, y)])


def epoch_metrics(kind: str, total: torch.Tensor | list[float], n: int) -> dict[str, float]:
    """{"loss": mean loss, "acc": ...} (regression: "mse", "mae", "r2") from summed batch_sums."""
    values = total.tolist() if isinstance(total, torch.Tensor) else list(total)
    return {"loss": values[0] / n, **task_metrics.finish(kind, values[1:], n)}


@torch.no_grad()
def evaluate(exp: Experiment, split: Split) -> dict[str, float]:
    """Mean loss and the task's metrics over a split, in batches, in eval mode (one host sync at the end)."""
    exp.model.eval()
    total: torch.Tensor | int = 0
    size = exp.trainer.eval_batch_size
    for start in range(0, len(split), size):
        x, y = split.x[start : start + size], split.y[start : start + size]
        with autocast(exp.device, exp.trainer.precision):
            out = exp.model(x)
            loss = exp.loss_fn(out, y).float()
        total = total + batch_sums(exp, out, y, loss)
    exp.model.train()
    return epoch_metrics(exp.data.kind, total, len(split))


class Monitor:
    """Best value of the monitored metric, and early stopping on it."""

    def __init__(self, cfg: EarlyStoppingConfig):
        self.metric, self.patience, self.min_delta = cfg.metric, cfg.patience, cfg.min_delta
        self.sign = -task_metrics.better(self.metric)  # losses and errors go down, accuracy and R^2 up
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

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


class StopRequest:
    """SIGTERM / SIGINT (cluster preemption, Ctrl-C) while training: note it, and let the loop save a
    checkpoint and stop at the end of the current step."""

    def __init__(self):
        self.signal: Optional[int] = None
        self.previous: dict = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def fit(exp: Experiment, run_dir: Path, tracker: Tracker, resume: Optional[dict] = None) -> dict[str, Any]:
    """Train, validate every eval_every epochs, keep `last` and `best` checkpoints, test at the end.
    With `resume` (a checkpoint's state), continue exactly where that checkpoint left off."""
    t, data, model = exp.trainer, exp.data, exp.model
    shuffle = torch.Generator().manual_seed(t.seed)
    noise = torch.Generator(device=exp.device).manual_seed(t.seed)  # augmentation and input noise
    scaler = torch.amp.GradScaler(exp.device.type, enabled=t.precision == "fp16")
    probe = (data.train.x[: exp.diagnostics.probe_size], data.train.y[: exp.diagnostics.probe_size])
    diag = Diagnostics(model, exp.loss_fn, exp.activation_type, probe, data.num_classes, exp.diagnostics,
                       exp.alarms, tracker, t.log_every, exp.optimizer, data.kind)  # fmt: skip
    monitor, status, started = Monitor(exp.early_stopping), "ok", time.perf_counter()
    ckpt_dir, metrics, stop = run_dir / "checkpoints", {}, StopRequest()
    loop = Position(shuffle.get_state())
    if resume is None:
        if exp.pretrain.method != "none":  # the initial-loss and flat-loss alarms are then off: not from scratch
            diag.pretrain = greedy_pretrain(exp, tracker)
        diag.start()
        checkpoint.save(ckpt_dir / "last.pt", _state(exp, loop, metrics, monitor, diag, scaler, noise))  # good from the start
    else:
        metrics = _restore(exp, resume, loop, monitor, diag, scaler, shuffle, noise)
    progress = TrainingProgress(t.epochs, exp.steps_per_epoch, enabled=t.progress)
    model.train()
    with progress, stop:
        for epoch in range(loop.epoch, t.epochs + 1):
            loop.start_epoch(epoch, shuffle.get_state(), exp.device)
            epoch_start = time.perf_counter()
            for i, idx in enumerate(batch_indices(len(data.train), t.batch_size, shuffle, exp.device)):
                if i < loop.batch:  # resumed mid-epoch: these batches are done
                    continue
                x, y = data.train.x[idx], data.train.y[idx]
                if data.augment is not None:
                    x = data.augment(x, noise)
                if exp.regularization.input_noise > 0:
                    x = x + exp.regularization.input_noise * torch.randn(x.shape, generator=noise, device=x.device)
                loop.step += 1
                diag.before_step(loop.step)
                out, loss, norm = train_step(exp, x, y, scaler)
                loop.add(batch_sums(exp, out, y, loss), len(y))
                if diag.after_step(loop.step, epoch, loss, norm):
                    status = "diverged"  # logs stay; `last` is the end of the previous epoch
                    break
                progress.batch(diag.recent_loss if loop.step % t.log_every == 0 else None)
                if stop.signal is not None or (t.checkpoint_every and loop.step % t.checkpoint_every == 0):
                    if diag.flush(loop.step, epoch):
                        status = "diverged"
                        break
                    checkpoint.save(ckpt_dir / "last.pt", _state(exp, loop, metrics, monitor, diag, scaler, noise))
                    if stop.signal is not None:
                        status = "interrupted"
                        break
            if status == "ok" and diag.flush(loop.step, epoch):
                status = "diverged"
            if status != "ok":
                break

            metrics = _end_epoch(exp, tracker, epoch, loop, time.perf_counter() - epoch_start)
            loop.end_epoch(shuffle.get_state())
            state = _state(exp, loop, metrics, monitor, diag, scaler, noise)
            if monitor.metric in metrics and monitor.update(epoch, metrics):
                state["monitor"] = monitor.state_dict()
                checkpoint.save(ckpt_dir / "best.pt", state)
            checkpoint.save(ckpt_dir / "last.pt", state)
            checkpoint.keep_numbered(ckpt_dir / "last.pt", epoch, t.keep_checkpoints)
            diag.end_epoch(epoch, loop.step, last_epoch=epoch == t.epochs or monitor.should_stop)
            progress.epoch(epoch, metrics)
            if monitor.should_stop:
                break

    alarms = diag.finish(metrics, loop.step) if status == "ok" else [a.as_dict() for a in diag.raised]
    summary = _finish(exp, run_dir, tracker, monitor, metrics, loop.last_epoch, loop.step, time.perf_counter() - started,
                      status, alarms, diag.initial)  # fmt: skip
    if diag.pretrain:
        summary["pretrain"] = {"method": exp.pretrain.method, "epochs_per_stage": exp.pretrain.epochs, "stages": diag.pretrain}
        write_summary(run_dir, summary)
    if stop.signal is not None:
        import signal as signals

        summary["signal"] = signals.Signals(stop.signal).name
        write_summary(run_dir, summary)
    return summary


def greedy_pretrain(exp: Experiment, tracker: Tracker) -> list[dict]:
    """pretrain.method (supervised | autoencoder) on the training split, before the end-to-end training;
    each stage's loss per epoch goes to TensorBoard as pretrain/STAGE_loss."""
    from nnlab.console import console
    from nnlab.pretrain import pretrain

    p, t, epoch = exp.pretrain, exp.trainer, [0]

    def log(stage: str, losses: list[float]) -> None:
        for value in losses:
            epoch[0] += 1
            tracker.scalars(epoch[0], {f"pretrain/{stage}_loss": value})
        console.print(f"pretrain ({p.method}) {stage}: loss {losses[0]:.4f} -> {losses[-1]:.4f} in {len(losses)} epochs")

    return pretrain(_bare(exp.model), p.method, exp.data.train.x, exp.data.train.y, exp.loss_fn, p.epochs, t.batch_size,
                    exp.make_optimizer, t.seed, log)  # fmt: skip


class Position:
    """Where the loop is: epoch, batches done in it, global step, and the epoch's running sums. Saved
    with every checkpoint so that a resumed run replays exactly the same batches."""

    def __init__(self, shuffle_state: torch.Tensor):
        self.epoch, self.batch, self.step = 1, 0, 0
        self.shuffle_state = shuffle_state  # the shuffle generator at the start of `epoch`
        self.sums, self.count = None, 0

    def start_epoch(self, epoch: int, shuffle_state: torch.Tensor, device) -> None:
        if epoch != self.epoch or self.sums is None:  # a fresh epoch (not one resumed mid-way)
            self.epoch, self.batch, self.count = epoch, 0, 0
            self.sums = torch.zeros((), device=device)  # batch_sums added up on the device: read once per epoch
        self.shuffle_state = shuffle_state

    def add(self, sums: torch.Tensor, n: int) -> None:
        self.sums = self.sums + sums
        self.count += n
        self.batch += 1

    def end_epoch(self, shuffle_state: torch.Tensor) -> None:
        self.epoch, self.batch, self.count, self.sums = self.epoch + 1, 0, 0, None
        self.shuffle_state = shuffle_state

    @property
    def last_epoch(self) -> int:
        """The last epoch begun and not left untouched: done, or partly done."""
        return self.epoch - 1 if self.batch == 0 else self.epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step, "shuffle": self.shuffle_state,
                "sums": None if self.sums is None else self.sums.cpu(), "count": self.count}  # fmt: skip


def _end_epoch(exp: Experiment, tracker: Tracker, epoch: int, loop: Position, elapsed: float) -> dict:
    """The epoch's metrics (validation at its cadence), logged; the plateau schedule; the decision boundary."""
    t, data, step, count = exp.trainer, exp.data, loop.step, loop.count
    metrics = {f"{k}/train": v for k, v in epoch_metrics(data.kind, loop.sums, count).items()}
    if data.val is not None and (epoch % t.eval_every == 0 or epoch == t.epochs):
        metrics.update({f"{k}/val": v for k, v in evaluate(exp, data.val).items()})
    metrics.update({"time/epoch_s": elapsed, "throughput/examples_per_s": count / elapsed})
    tracker.scalars(step, metrics, epoch)
    if per_epoch(exp.scheduler) and "loss/val" in metrics:
        exp.scheduler.step(metrics["loss/val"])
    if data.kind in ("points", "regression") and data.in_shape[0] <= 2 and (epoch % t.boundary_every == 0 or epoch == t.epochs):
        if data.kind == "points":
            image = diagnostics.decision_boundary(exp.model, exp.loss_fn.predict, data.train.x, data.train.y)
            tracker.image("decision_boundary", image, step)
        else:
            tracker.image("regression_fit", diagnostics.regression_fit(exp.model, exp.loss_fn.link, data.train.x, data.train.y), step)
    return metrics


def _bare(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # unwrap torch.compile


def _state(exp: Experiment, loop: Position, metrics, monitor: Monitor, diag: Diagnostics, scaler, noise) -> dict:
    """Everything needed to continue exactly: weights, optimizer, schedule, scaler, position, the random
    states, early-stopping and diagnostics state, and the config. Tensors and plain types only."""
    import numpy as np

    np_state = np.random.get_state()
    rng = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "noise": noise.get_state(),
    }
    return {
        "model": _bare(exp.model).state_dict(),
        "optimizer": exp.optimizer.state_dict(),
        "scheduler": exp.scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": loop.last_epoch,
        "step": loop.step,
        "position": loop.state_dict(),
        "rng": rng,
        "monitor": monitor.state_dict(),
        "diagnostics": diag.state_dict(),
        "metrics": metrics,
        "config": exp.config,
    }


def _restore(exp: Experiment, state: dict, loop: Position, monitor: Monitor, diag: Diagnostics, scaler, shuffle, noise) -> dict:
    """Load a checkpoint's state into the run's objects; returns the metrics of its last epoch."""
    import numpy as np

    _bare(exp.model).load_state_dict(state["model"])
    exp.optimizer.load_state_dict(state["optimizer"])
    exp.scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    monitor.load_state_dict(state["monitor"])
    diag.load_state_dict(state["diagnostics"])
    pos = state["position"]
    loop.epoch, loop.batch, loop.step, loop.count = pos["epoch"], pos["batch"], pos["step"], pos["count"]
    loop.sums = None if pos["sums"] is None else pos["sums"].to(exp.device)
    shuffle.set_state(pos["shuffle"])
    rng = state["rng"]
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    np.random.set_state((rng["numpy"][0], rng["numpy"][1].numpy(), *rng["numpy"][2:]))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    noise.set_state(rng["noise"])
    return state["metrics"]


def _finish(exp, run_dir, tracker, monitor, last_metrics, epoch, step, wall_time, status, alarms, initial_loss):
    """Test the best checkpoint (model selection on the monitored metric), log, write summary.json."""
    best_path = run_dir / "checkpoints" / "best.pt"
    names = ("loss", *task_metrics.names(exp.data.kind))
    final = {k: v for k, v in last_metrics.items() if k.split("/")[0] in names}
    if status == "ok" or (status == "diverged" and best_path.exists()):
        if best_path.exists():
            _bare(exp.model).load_state_dict(checkpoint.load(best_path, map_location=exp.device)["model"])
        test = {f"{k}/test": v for k, v in evaluate(exp, exp.data.test).items()}
        final.update(test)
        tracker.scalars(step, test, epoch)
    hparams = flatten(exp.config)
    tracker.hparams(hparams, {k: v for k, v in final.items() if not k.endswith("/train")})
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
    if metric.startswith("acc/"):
        return 0.0
    return -math.inf if task_metrics.better(metric) > 0 else math.inf  # R^2 has no lower bound


def objective(summary: dict[str, Any], metric: str) -> float:
    """The value a sweeper optimizes: the run's final `metric` (the early_stopping metric), or the worst
    value where the run did not finish well."""
    value = summary["metrics"].get(metric)
    if summary["status"] != "ok" or value is None or not math.isfinite(value):
        return worst_objective(metric)
    return value


# settings a resumed run may change: they do not alter what is computed
MAY_CHANGE = ("trainer.epochs", "trainer.progress", "trainer.keep_checkpoints")


def resume_state(resume: Optional[str], run_dir: Path, config: dict) -> Optional[dict]:
    """The checkpoint to continue from: resume=auto (this run directory's last.pt, if any) or a path (a
    run directory or a checkpoint file). Refuses a checkpoint made with a different config."""
    from nnlab.config import ConfigError

    if resume is None:
        return None
    path = run_dir / "checkpoints" / "last.pt" if resume == "auto" else Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if resume == "auto" and not path.exists():
        return None
    state = checkpoint.load(path)
    def compared(c: dict) -> dict:
        return {k: v for k, v in flatten(c).items() if k.split(".")[0] not in ("resume", "choices") and k not in MAY_CHANGE}

    mine, theirs = compared(config), compared(state["config"])
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        shown = ", ".join(f"{k}={theirs.get(k)!r} there vs {mine.get(k)!r} here" for k in differ[:5])
        raise ConfigError(f"{path} was made with a different config ({shown}); resume with the same overrides "
                          f"(only {', '.join(MAY_CHANGE)} may change), or start a new run.")  # fmt: skip
    return state


def run(cfg: DictConfig, run_dir: str | Path, choices: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """The `nnlab train` job: set up, train (or continue: cfg.resume), report. Returns summary.json's content."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    exp = setup(cfg)
    state = resume_state(cfg.resume, run_dir, exp.config)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run_dir / "environment.json").write_text(json.dumps(environment(str(exp.device)), indent=2) + "\n")
    if exp.notes:
        from nnlab.console import console

        for note in exp.notes:
            console.print(note, soft_wrap=True)
    if choices:
        exp.config["choices"] = dict(choices)
    if state is not None:  # drop what was logged after the checkpoint: it will be logged again
        rows = run_dir / "metrics.jsonl"
        if rows.exists():
            kept = [line for line in rows.read_text().splitlines() if json.loads(line)["step"] <= state["step"]]
            rows.write_text("".join(line + "\n" for line in kept))
    tracker = Tracker(run_dir, purge_step=state["step"] + 1 if state is not None else None)
    try:
        if state is None:
            tracker.text("config", "```\n" + OmegaConf.to_yaml(cfg, resolve=True) + "\n```")
            for note in exp.notes:
                tracker.text("notes", note)
        summary = fit(exp, run_dir, tracker, resume=state)
    finally:
        tracker.close()
    diagnostics.curves_figure([json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()], run_dir / "curves.png")
    summary_table(summary)
    return summary
