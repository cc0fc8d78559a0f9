"""The training loop, plain PyTorch: fit() trains an Experiment (built by setup.py), validating every
eval_every epochs, keeping `last` and `best` checkpoints and testing the best at the end; train_step() is
one optimizer step; evaluate() measures a split. run() is the whole `nnlab train` job around them.

The loop sees torch objects and plain dataclasses, never the config.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from nnlab import checkpoint, figures, pretrain, run_folder
from nnlab import metrics as task_metrics
from nnlab.config import EarlyStoppingConfig
from nnlab.console import TrainingProgress, epoch_line, summary_text
from nnlab.data.loader import Split, batch_indices
from nnlab.diagnostics import Diagnostics
from nnlab.nn import eval_mode
from nnlab.optim import per_epoch
from nnlab.run_files import close_run, final_figures, finished_message, hparams_of, open_run
from nnlab.setup import Experiment, bare, model_summary, setup
from nnlab.tracking import Tracker


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
    return out, loss, update(exp, scaler)


def update(exp: Experiment, scaler) -> torch.Tensor:
    """The step after the backward pass: clip, measure, step, constrain, schedule. Returns the global
    gradient norm (before clipping), on the device. A run alone steps as a stack of one (exp.step, the
    arithmetic of every member of a stack: optim.StackedUpdate); with fp16 scaling, several parameter
    groups or an optimizer that has no stacked form, torch's own step."""
    if exp.step is not None:
        norm = exp.step()[0]
        if not per_epoch(exp.scheduler):
            exp.scheduler.step()
        return norm
    reg = exp.regularization
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
    return norm


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


def evaluate(exp: Experiment, split: Split) -> dict[str, float]:
    """Mean loss and the task's metrics over a split, in batches, in eval mode (one host sync at the end)."""
    with torch.no_grad(), eval_mode(exp.model):
        return _evaluate(exp, split)


def _evaluate(exp: Experiment, split: Split) -> dict[str, float]:
    total: torch.Tensor | int = 0
    size = exp.trainer.eval_batch_size
    for start in range(0, len(split), size):
        x, y = split.x[start : start + size], split.y[start : start + size]
        with autocast(exp.device, exp.trainer.precision):
            out = exp.model(x)
            loss = exp.loss_fn(out, y).float()
        total = total + batch_sums(exp, out, y, loss)
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
    run = Training(exp, run_dir, tracker, resume)
    t = exp.trainer
    progress = TrainingProgress(t.epochs, exp.steps_per_epoch, enabled=t.progress, done=run.loop.step)
    with progress, run.stop:
        drive(run, progress)
    return run.finish()


def drive(run: "Training", progress: Optional[TrainingProgress] = None) -> None:
    """The loop: every epoch's steps, then its end (validation, checkpoints), until the run stops. fit()
    drives a run with it, and so does a batched sweep for a member whose stack could not be built."""
    exp, log_every = run.exp, run.exp.trainer.log_every
    for epoch in run.epochs():
        for x, y in run.batches(epoch):
            run.before_step()
            out, loss, norm = train_step(exp, x, y, run.scaler)
            if not run.after_step(epoch, out, y, loss, norm):
                break
            if progress is not None:
                progress.batch(run.diag.recent_loss if run.loop.step % log_every == 0 else None)
        if not run.end_epoch(epoch):
            break
        if progress is not None:
            progress.epoch(epoch, run.metrics)


class Training:
    """One run in training: its generators, diagnostics, early stopping, position and checkpoints,
    driven by fit() (or, for the members of a batched sweep, by launcher.py) through a few calls:
    epochs(), batches(epoch), before_step(), after_step(...), end_epoch(epoch), finish()."""

    def __init__(self, exp: Experiment, run_dir: Path, tracker: Tracker, resume: Optional[dict] = None):
        t, data = exp.trainer, exp.data
        self.exp, self.run_dir, self.tracker = exp, Path(run_dir), tracker
        self.shuffle = torch.Generator().manual_seed(t.seed)
        self.noise = torch.Generator(device=exp.device).manual_seed(t.seed)  # augmentation and input noise
        self.scaler = torch.amp.GradScaler(exp.device.type, enabled=t.precision == "fp16")
        probe = (data.train.x[: exp.diagnostics.probe_size], data.train.y[: exp.diagnostics.probe_size])
        self.diag = Diagnostics(exp.model, exp.loss_fn, exp.activation_type, probe, data.num_classes, exp.diagnostics,
                                exp.alarms, tracker, t.log_every, exp.optimizer, data.kind)  # fmt: skip
        self.monitor, self.status, self.started = Monitor(exp.early_stopping), "ok", time.perf_counter()
        self.ckpt_dir, self.metrics, self.stop = self.run_dir / "checkpoints", {}, StopRequest()
        self.loop = Position(self.shuffle.get_state())
        if resume is None:
            if exp.pretrain.method != "none":  # the initial-loss and flat-loss alarms are then off: not from scratch
                self.diag.pretrain = pretrain.greedy(exp, tracker)
            self.diag.start()
            checkpoint.save(self.ckpt_dir / "last.pt", self._state())  # good from the start
        else:
            self.metrics = checkpoint.restore(exp, resume, self.loop, self.monitor, self.diag, self.scaler, self.shuffle, self.noise)
        exp.model.train()
        from nnlab.console import check_interrupt

        check_interrupt()  # a Ctrl-C during start-up that a library swallowed: from here on the loop saves and stops

    def _state(self) -> dict:
        return checkpoint.state(self.exp, self.loop, self.metrics, self.monitor, self.diag, self.scaler, self.noise)

    def epochs(self) -> range:
        return range(self.loop.epoch, self.exp.trainer.epochs + 1)

    def batches(self, epoch: int):
        """The epoch's training batches (x, y) as the step sees them: augmented, with input noise."""
        exp, data, loop = self.exp, self.exp.data, self.loop
        loop.start_epoch(epoch, self.shuffle.get_state(), exp.device)
        self.epoch_start = time.perf_counter()
        for i, idx in enumerate(batch_indices(len(data.train), exp.trainer.batch_size, self.shuffle, exp.device)):
            if i < loop.batch:  # resumed mid-epoch: these batches are done
                continue
            x, y = data.train.x[idx], data.train.y[idx]
            if data.augment is not None:
                x = data.augment(x, self.noise)
            if exp.regularization.input_noise > 0:
                x = x + exp.regularization.input_noise * torch.randn(x.shape, generator=self.noise, device=x.device)
            yield x, y

    def before_step(self) -> None:
        self.loop.step += 1
        self.diag.before_step(self.loop.step)

    def after_step(self, epoch: int, out, y, loss, norm) -> bool:
        """Count and watch the step, save at the checkpoint cadence or on a signal. False: stop now."""
        exp, loop, t = self.exp, self.loop, self.exp.trainer
        loop.add(batch_sums(exp, out, y, loss), len(y))
        if self.diag.after_step(loop.step, epoch, loss, norm):
            self.status = "diverged"  # logs stay; `last` is the end of the previous epoch
            return False
        if self.stop.signal is not None or (t.checkpoint_every and loop.step % t.checkpoint_every == 0):
            if self.diag.flush(loop.step, epoch):
                self.status = "diverged"
                return False
            checkpoint.save(self.ckpt_dir / "last.pt", self._state())
            if self.stop.signal is not None:
                self.status = "interrupted"
                return False
        return True

    def end_epoch(self, epoch: int) -> bool:
        """Validate, log, checkpoint `last` (and `best`), histograms. False: the run stops here (it
        diverged or was interrupted during the epoch, or early stopping says so)."""
        if self.status == "ok" and self.diag.flush(self.loop.step, epoch):
            self.status = "diverged"
        if self.status != "ok":
            return False
        exp, loop, monitor = self.exp, self.loop, self.monitor
        self.metrics = _end_epoch(exp, self.tracker, epoch, loop, time.perf_counter() - self.epoch_start)
        self.tracker.log(epoch_line(epoch, self.metrics))
        loop.end_epoch(self.shuffle.get_state())
        state = self._state()
        if monitor.metric in self.metrics and monitor.update(epoch, self.metrics):
            state["monitor"] = monitor.state_dict()
            checkpoint.save(self.ckpt_dir / "best.pt", state)
            checkpoint.same_as(self.ckpt_dir / "last.pt", self.ckpt_dir / "best.pt", state)  # written once, linked
        else:
            checkpoint.save(self.ckpt_dir / "last.pt", state)
        checkpoint.keep_numbered(self.ckpt_dir / "last.pt", epoch, exp.trainer.keep_checkpoints)
        self.diag.end_epoch(epoch, loop.step, last_epoch=epoch == exp.trainer.epochs or monitor.should_stop)
        return not monitor.should_stop

    def finish(self) -> dict[str, Any]:
        """Test the best checkpoint, the closing alarms: the summary, not yet written (summary.json is the
        last file a run writes, after its figures: a kill while closing leaves it resumable, not 'finished')."""
        exp, diag, run_dir, status = self.exp, self.diag, self.run_dir, self.status
        alarms = diag.finish(self.metrics, self.loop.step) if status == "ok" else [a.as_dict() for a in diag.raised]
        summary = _finish(exp, run_dir, self.tracker, self.monitor, self.metrics, self.loop.last_epoch, self.loop.step,
                          time.perf_counter() - self.started, status, alarms, diag.initial)  # fmt: skip
        if diag.pretrain:
            summary["pretrain"] = {"method": exp.pretrain.method, "epochs_per_stage": exp.pretrain.epochs, "stages": diag.pretrain}
        if self.stop.signal is not None:
            import signal as signals

            name = signals.Signals(self.stop.signal).name
            if status == "interrupted":
                summary["signal"] = name
            else:  # it came after the last step: the run is complete, and says so
                self.tracker.log(f"{name} arrived after the last step: the run was complete and closes as {status}")
        self.tracker.log(summary_text(summary))
        return summary


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
            image = figures.decision_boundary(exp.model, exp.loss_fn.predict, data.train.x, data.train.y)
            tracker.image("decision_boundary", image, step)
        else:
            tracker.image("regression_fit", figures.regression_fit(exp.model, exp.loss_fn.link, data.train.x, data.train.y), step)
    return metrics


def _finish(exp, run_dir, tracker, monitor, last_metrics, epoch, step, wall_time, status, alarms, initial_loss):
    """Test the best checkpoint (model selection on the monitored metric), log, write summary.json."""
    best_path = run_dir / "checkpoints" / "best.pt"
    names = ("loss", *task_metrics.names(exp.data.kind))
    final = {k: v for k, v in last_metrics.items() if k.split("/")[0] in names}
    if status == "ok" or (status == "diverged" and best_path.exists()):
        if best_path.exists():
            bare(exp.model).load_state_dict(checkpoint.load(best_path, map_location=exp.device)["model"])
        test = {f"{k}/test": v for k, v in evaluate(exp, exp.data.test).items()}
        final.update(test)
        tracker.scalars(step, test, epoch)
    hparams = hparams_of(exp.config)
    tracker.hparams(hparams, final, experiment=not exp.config.get("multirun"))  # a sweep's: sweep_overview()
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
        "model": model_summary(exp.model),
        "hparams": hparams,
        "run_dir": str(run_dir),
        "checkpoints": {"last": "checkpoints/last.pt", "best": "checkpoints/best.pt" if best_path.exists() else None},
    }
    return summary


def run(cfg: DictConfig, run_dir: str | Path, job: Optional[dict] = None,
        cpu_share: Optional[int] = None) -> dict[str, Any]:
    """The `nnlab train` job: set up, train (or continue: cfg.resume), report. Returns summary.json's
    content. The run folder is this process's alone while it runs (run_folder.Lock)."""
    run_dir = Path(run_dir)
    with run_folder.Lock(run_dir):
        run_folder.check_start(run_dir, cfg.resume, cfg.overwrite)
        run_folder.remove_leftovers(run_dir)  # temporary files of saves that a kill interrupted
        done = checkpoint.finished(run_dir, cfg.trainer.epochs) if cfg.resume is not None else None
        if done is not None:
            from nnlab.console import console

            console.print(finished_message(run_dir, done), soft_wrap=True)
            return done
        exp = setup(cfg, cpu_share)
        state = checkpoint.resume_state(cfg.resume, run_dir, exp.config)
        return _run(cfg, run_dir, exp, state, job)


def _run(cfg: DictConfig, run_dir: Path, exp: Experiment, state: Optional[dict], job) -> dict[str, Any]:
    tracker = open_run(cfg, run_dir, exp, state, job)
    try:
        summary = fit(exp, run_dir, tracker, resume=state)
        final_figures(exp, run_dir, tracker, summary)
    finally:
        tracker.close()
    close_run(run_dir, exp, summary)
    return summary
