"""The training loop, plain PyTorch, for K >= 1 runs at once: train() drives the members (run_files.Member:
a run set up by setup.py, its files open) through their epochs, validating every eval_every epochs,
keeping `last` and `best` checkpoints and testing the best at the end. A run alone is a stack of one; a
sweep's group of runs that train together (launcher.py) is a stack of K, one model (engine/stack.py).
steps.py is one optimizer step of every member and the evaluations; Training is one member in training.

The loop sees torch objects and plain dataclasses, never the config.
"""

from __future__ import annotations

import math
import signal as signals
import time
from pathlib import Path
from typing import Any

import torch

from nnlab import metrics as task_metrics
from nnlab.config.schema import LIGHT_ABOVE
from nnlab.data.loader import batch_indices
from nnlab.engine.schedules import per_epoch
from nnlab.engine.stack import Solo, Stack
from nnlab.nn import bare
from nnlab.nn.dropout import use_generator
from nnlab.run_files import checkpoint
from nnlab.run_files.tracking import Tracker, write_summary
from nnlab.training import pretrain, transfer
from nnlab.training.diagnostics import Diagnostics, stack_boundaries, stack_measure
from nnlab.training.loop_state import Monitor, Position, StopRequest, Trail
from nnlab.training.member import Member, close, guard, hparams_of, said
from nnlab.training.setup import Experiment, model_summary
from nnlab.training.steps import epoch_metrics, step, step_sums, tally_step, test, validate
from nnlab.views import figures
from nnlab.views.console import TrainingProgress, check_interrupt, epoch_line, stack_info, summary_text, warning
from nnlab.views.painter import Drawing, Painter


def train(members: list[Member], label: str = "", quiet: bool | None = None) -> list[dict | None]:
    """Train K >= 1 members (run_files.prepare) as one stack where they can (engine/stack.py), each writing its
    own run folder; their summaries, in order. A run alone (K = 1) raises what fails; in a stack of K > 1 a
    failure ends that member alone (its folder says why; its summary is None) and the others go on.
    `quiet` (a stack's always, a sweep's run alone unless sweep.each_run=full): no epoch lines nor closing
    table on the terminal, one line per setting as it ends (train.log and TensorBoard keep everything)."""
    alone = len(members) == 1
    quiet = not alone if quiet is None else quiet
    drawn = "all" if alone else members[0].cfg.sweep.run_figures  # a stack's runs: only the figures asked for
    light = not alone and (
        members[0].cfg.sweep.light == "on" or (members[0].cfg.sweep.light == "auto" and len(members) > LIGHT_ABOVE)
    )
    drawn = "none" if light and drawn == "final" else drawn
    painter = _painter(members, drawn)
    started = time.perf_counter()
    try:
        with StopRequest() as stop:  # one handler for the stack: a SIGTERM saves every member
            check_interrupt()  # a signal in start-up that a library swallowed: stop before a checkpoint is written
            for m in members:
                m.training = guard(
                    m, alone, lambda m=m: Training(m.exp, m.run_dir, m.tracker, m.state, stop, quiet=quiet)
                )
                if light and m.training is not None:
                    _lighten(m, len(members))
            for engine, group in _engines([m for m in members if m.training is not None]):
                t = group[0].exp.trainer
                progress = TrainingProgress(
                    t.epochs,
                    group[0].exp.steps_per_epoch,
                    enabled=t.progress,
                    done=group[0].training.loop.step,
                    stack=None if alone else f"stack {label}",
                    lines=not quiet,
                )
                with progress:
                    _drive(engine, group, progress, alone, light)
                test(engine, group, alone)
        wall = time.perf_counter() - started  # the stack's training time, the same for every member
        summaries = [close(m, alone, label, len(members), wall) for m in members]
        for m in members:
            m.tracker.close()  # its figures drawn (by the painter, for a stack, while the others closed)
        curves = [
            painter.submit(figures.run_curves, m.run_dir, m.exp.data.kind)
            if painter is not None
            else Drawing(figures.run_curves, (m.run_dir, m.exp.data.kind))
            for m, s in zip(members, summaries)
            if s and drawn == "all"
        ]
        for drawing in curves:
            drawing.result()
        for m, summary in zip(members, summaries):  # summary.json last: a kill before it leaves the run resumable
            if summary is not None:
                write_summary(m.run_dir, summary)
        if any(s is not None for s in summaries):
            said(members, summaries, quiet)
        return summaries
    finally:
        if painter is not None:
            painter.close()
        for m in members:
            try:
                m.tracker.close()  # (closed already where it closed well)
            except OSError:
                pass  # a full disk: what failed first is what is said (cli's job); the folder's lock goes regardless
            finally:
                m.lock.__exit__()


def _painter(members: list[Member], drawn: str):
    """Where a stack's figures are drawn: where its runs draw them all, beside the training, in worker
    processes (views.painter.Painter; for the final figures alone it is no faster: measured 15.2 s against 15.0
    s for 16 seeds); the tags its runs skip (sweep.run_figures)."""
    if len(members) == 1:
        return None
    for m in members:
        m.tracker.skip = SKIPPED[drawn]
    if drawn != "all":
        return None
    painter = Painter()
    for m in members:
        m.tracker.painter = painter
    return painter


RUN_FIGURES = frozenset({"activations_per_layer", "decision_boundary_final", "confusion_matrix", "misclassified"})
SKIPPED = {
    "all": frozenset(),
    "final": frozenset({"activations_per_layer"}),
    "none": RUN_FIGURES,
}  # by sweep.run_figures


def _engines(members: list[Member]) -> list[tuple[Any, list[Member]]]:
    """What the loop drives: the members as one Stack, or each as a Solo (a run alone; a model the stack
    does not batch)."""
    if len(members) <= 1:
        return [(Solo(m.exp, m.training.scaler), [m]) for m in members]
    stack = Stack([m.exp for m in members], [m.training.scaler for m in members])
    if stack.why:
        warning(f"these runs cannot share one stack ({stack.why}): they train one after another")
        return [(Solo(m.exp, m.training.scaler), [m]) for m in members]
    if stack.unfused:
        warning(f"the stack's members step one optimizer each ({stack.unfused}): correct, and slower")
    return [(stack, members)]


LIGHT_CHECKPOINT_S = 10.0  # a light member's checkpoints: at most this often (and on a signal, and at the end)


def _lighten(m: Member, size: int) -> None:
    """sweep.light: what a member of a large stack does not write (said in its train.log): checkpoints at
    most every LIGHT_CHECKPOINT_S, no histograms, no decision boundaries while training; its closing
    figures (train: run_figures final -> none) are drawn on demand (nnlab report --figures), and the run
    trained alone computes the same numbers with everything."""
    m.training.save_every_s = LIGHT_CHECKPOINT_S
    m.exp.diagnostics.histograms_every = 0
    m.tracker.log(
        f"sweep.light: one of a stack of {size}: checkpoints at most every {LIGHT_CHECKPOINT_S:g} s, no histograms, no "
        "decision boundaries nor closing figures (nnlab report SWEEP --figures draws them; trained alone, this run "
        "computes the same numbers and writes everything)"
    )


def _drive(engine, members: list[Member], progress: TrainingProgress, alone: bool, light: bool = False) -> None:
    """Every epoch's steps of every member still running, then each one's epoch end (validation,
    checkpoints), until all have stopped; `light`: without the decision-boundary images (sweep.light)."""
    exps, log_every = [m.exp for m in members], members[0].exp.trainer.log_every
    for epoch in range(min(m.training.loop.epoch for m in members), exps[0].trainer.epochs + 1):
        running = [m for m in members if not m.done]
        if not running:
            return
        batches = [m.training.batches(epoch) for m in members]
        trail, tally = Trail(), None  # the epoch's per-step losses and norms, and its running sums, of every member
        for k, m in enumerate(members):
            m.training.diag.trail, m.training.diag.row = trail, k
        while True:
            items = [next(b, None) if not m.done else None for m, b in zip(members, batches)]
            if all(i is None for i in items):
                break
            for m, i in zip(members, items):
                if i is not None:
                    m.training.before_step()
            out, y, losses, norms = step(engine, exps, items)
            sums = step_sums(exps, out, y, losses)  # every member's loss and metric sums, in one go
            tally = tally_step(members, items, sums, tally)
            stepped = next(m.training.loop.step for m, i in zip(members, items) if i is not None)
            trail.add(stepped, losses, norms)
            measured = (
                stack_measure(engine, [m.training.diag for m in members], [not m.done for m in members])
                if isinstance(engine, Stack)
                else {}
            )  # a stack's per-layer statistics where due, in one pass
            for k, (m, i) in enumerate(zip(members, items)):
                if i is not None and not guard(m, alone, m.training.after_step, epoch, len(i[1]), measured.get(k)):
                    m.done = True
            first = members[0].training  # a run alone: its live loss (a stack's line: its members, at epoch ends)
            progress.batch(first.diag.recent_loss if alone and first.loop.step % log_every == 0 else None)
        engine.share_grads()  # each member's gradients of the epoch's last step, for its histograms
        val = validate(engine, members, epoch)  # every member due, in one pass; and their decision boundaries:
        images = {} if light else stack_boundaries(engine, exps, [not m.done for m in members], epoch)
        for k, m in enumerate(members):
            if not m.done and not guard(m, alone, m.training.end_epoch, epoch, val.get(k), images.get(k)):
                m.done = True
        if alone:  # its line only where the epoch ended (not one cut short by a signal or a divergence)
            if members[0].training.ended == epoch:
                progress.epoch(epoch, members[0].training.metrics)
        else:
            metric = task_metrics.followed(members[0].exp.early_stopping.metric)
            running = [m for m in members if not m.done]
            progress.epoch(
                epoch,
                {},
                stack_info(
                    len(running),
                    len(members) - len(running),
                    metric,
                    [m.training.metrics.get(metric, math.nan) for m in running],
                ),
            )


class Training:
    """One member in training: its generators, diagnostics, early stopping, position and checkpoints,
    driven by train() through a few calls: batches(epoch), before_step(), after_step(...),
    end_epoch(epoch), finish(). `stop`: the loop's StopRequest (a signal saves and stops); `quiet`: its
    alarms go to its files only."""

    def __init__(
        self,
        exp: Experiment,
        run_dir: Path,
        tracker: Tracker,
        resume: dict | None,
        stop: StopRequest,
        quiet: bool = False,
    ):
        t, data = exp.trainer, exp.data
        self.exp, self.run_dir, self.tracker = exp, Path(run_dir), tracker
        self.shuffle = torch.Generator().manual_seed(t.seed)
        self.noise = torch.Generator(device=exp.device).manual_seed(t.seed)  # augmentation, input noise, dropout
        use_generator(exp.model, self.noise)  # its dropout masks do not depend on what else the process draws
        self.scaler = torch.amp.GradScaler(exp.device.type, enabled=t.precision == "fp16")
        probe = (data.train.x[: exp.diagnostics.probe_size], data.train.y[: exp.diagnostics.probe_size])
        self.diag = Diagnostics(
            exp.model,
            exp.loss_fn,
            exp.activation_type,
            probe,
            data.num_classes,
            exp.diagnostics,
            exp.alarms,
            tracker,
            t.log_every,
            exp.optimizer,
            data.kind,
        )
        self.diag.quiet = quiet  # a stack's alarms are said at its end, grouped by setting (run_files.alarms_said)
        self.monitor, self.status, self.started = Monitor(exp.early_stopping), "ok", time.perf_counter()
        self.ckpt_dir, self.metrics, self.stop = self.run_dir / "checkpoints", {}, stop
        self.test: dict | None = None  # the test metrics of the weights load_tested() loads (train.test())
        self.ended = 0  # the last epoch whose end this process logged (its line on the terminal)
        self.save_every_s = 0.0  # a light member (sweep.light): checkpoints at most this often (0: every epoch)
        self.saved_at = self.ended_at = time.perf_counter()
        self.pending: dict[str, dict] = {}  # the checkpoints not yet written (a light member's): name -> state
        self.best_weights: dict | None = None  # the model of the best.pt this process wrote (load_tested)
        self.loop = Position(self.shuffle.get_state())
        if resume is None:
            if exp.pretrain.method != "none":  # the initial-loss and flat-loss alarms are then off: not from scratch
                self.diag.pretrain = pretrain.greedy(exp, tracker)
            self.diag.start()
            checkpoint.save(self.ckpt_dir / "last.pt", self._state())  # good from the start
        else:
            self.metrics = checkpoint.restore(
                exp, resume, self.loop, self.monitor, self.diag, self.scaler, self.shuffle, self.noise
            )
        exp.model.train()

    def _state(self, kept: bool = False) -> dict:
        return checkpoint.state(
            self.exp, self.loop, self.metrics, self.monitor, self.diag, self.scaler, self.noise, kept
        )

    def batches(self, epoch: int):
        """The epoch's training batches (x, y) as the step sees them: augmented, with input noise."""
        exp, data, loop = self.exp, self.exp.data, self.loop
        if exp.reused and transfer.freeze(exp.reused, epoch <= exp.frozen_epochs) and epoch > 1:
            factor = exp.optimizer.param_groups[1]["lr"] / exp.optimizer.param_groups[0]["lr"]
            self.tracker.log(f"epoch {epoch}: the reused layers unfreeze and fine-tune (at the rate x{factor:g})")
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
        self.epoch_time = time.perf_counter() - self.epoch_start  # the training pass (validation comes after)

    def before_step(self) -> None:
        self.loop.step += 1
        self.diag.before_step(self.loop.step)

    def after_step(self, epoch: int, n: int, measured: tuple | None = None) -> bool:
        """Count the step of n examples (its sums are in the loop's tally, its loss and gradient norm in the
        trail) and watch it (`measured`: its per-layer statistics, where its stack measured them:
        diagnostics.stack_measure()), save at the checkpoint cadence or on a signal. False: stop now."""
        loop, t = self.loop, self.exp.trainer
        loop.add(n)
        if self.diag.after_step(loop.step, epoch, measured):
            self.status = "diverged"  # logs stay; `last` is the end of the previous epoch
            return False
        if self.stop.signal is not None or (t.checkpoint_every and loop.step % t.checkpoint_every == 0):
            if self.diag.flush(loop.step, epoch):
                self.status = "diverged"
                return False
            self.pending.pop("last.pt", None)  # this state is newer
            self.write_checkpoints()
            checkpoint.save(self.ckpt_dir / "last.pt", self._state())
            if self.stop.signal is not None:
                self.status = "interrupted"
                return False
        return True

    def end_epoch(self, epoch: int, val: dict | None = None, boundary: torch.Tensor | None = None) -> bool:
        """Log (with `val`, the validation metrics where due: validate(); `boundary`, the decision boundary's
        image where due: diagnostics.stack_boundaries()), checkpoint `last` (and `best`), histograms. False: the run stops here (it diverged or was interrupted during the epoch, or early
        stopping says so)."""
        if self.status == "ok" and self.diag.flush(self.loop.step, epoch):
            self.status = "diverged"
        if self.status != "ok":
            return False
        exp, loop, monitor = self.exp, self.loop, self.monitor
        self.metrics = _end_epoch(exp, self.tracker, epoch, loop, self.epoch_time, val)
        self.diag.curve.append(self.metrics["loss/train"])
        self.ended, self.ended_at = epoch, time.perf_counter()
        if boundary is not None:
            self.tracker.image("decision_boundary", boundary, loop.step)
        self.tracker.log(epoch_line(epoch, self.metrics))
        loop.end_epoch(self.shuffle.get_state())
        best = monitor.watches(self.metrics) and monitor.update(epoch, self.metrics)
        last = epoch == exp.trainer.epochs or monitor.should_stop
        write = last or time.perf_counter() - self.saved_at >= self.save_every_s
        if best or write:  # the state as of this epoch's end, its monitor updated (a light member's: only then)
            state = self._state(kept=not write)
            if best:  # kept until the next write (its tensors copies where training goes on first); `last` then anew
                self.pending["best.pt"] = state
            if write:
                self.pending["last.pt"] = state
                self.write_checkpoints()
                checkpoint.keep_numbered(self.ckpt_dir / "last.pt", epoch, exp.trainer.keep_checkpoints)
        self.diag.end_epoch(epoch, loop.step, last_epoch=epoch == exp.trainer.epochs or monitor.should_stop)
        return not monitor.should_stop

    def write_checkpoints(self) -> None:
        """Write the checkpoints kept for later (best first: a kill between the two leaves a `last` whose
        monitor has not yet seen that best, and its resumption finds the same best again), `last` as of the
        last epoch that ended; one state that is both is written once and linked."""
        best, last = self.pending.pop("best.pt", None), self.pending.pop("last.pt", None)
        if last is None and self.status == "ok" and self.saved_at < self.ended_at:  # an epoch ended since
            last = self._state()  # (a diverged run's `last` stays the one written before: good weights)
        if best is not None:
            checkpoint.save(self.ckpt_dir / "best.pt", best)
            self.best_weights = best["model"]
        if last is not None and last is best:
            checkpoint.same_as(self.ckpt_dir / "last.pt", self.ckpt_dir / "best.pt", last)
        elif last is not None:
            checkpoint.save(self.ckpt_dir / "last.pt", last)
        self.saved_at = time.perf_counter()

    def load_tested(self) -> bool:
        """Load the weights the test measures: the best checkpoint, where there is one. False where the run
        is not tested (interrupted; diverged before any epoch was kept)."""
        self.write_checkpoints()
        best = self.ckpt_dir / "best.pt"
        if not (self.status == "ok" or (self.status == "diverged" and best.exists())):
            return False
        if best.exists():
            model = bare(self.exp.model)
            weights = self.best_weights  # what best.pt holds, where a copy (a stack member's: not read back)
            if weights is None or _shares(weights, model):
                weights = checkpoint.load(best, map_location=self.exp.device)["model"]
            model.load_state_dict(weights)
        return True

    def finish(self) -> dict[str, Any]:
        """Test the best checkpoint, the closing alarms: the summary, not yet written (summary.json is the
        last file a run writes, after its figures: a kill while closing leaves it resumable, not 'finished')."""
        self.write_checkpoints()
        exp, diag, run_dir, status = self.exp, self.diag, self.run_dir, self.status
        alarms = diag.finish(self.metrics, self.loop.step) if status == "ok" else [a.as_dict() for a in diag.raised]
        epochs = (
            self.loop.epoch - 1 if status == "interrupted" else self.loop.last_epoch
        )  # interrupted: the epochs it finished
        summary = _finish(
            exp,
            run_dir,
            self.tracker,
            self.monitor,
            self.metrics,
            epochs,
            self.loop.step,
            time.perf_counter() - self.started,
            status,
            alarms,
            diag.initial,
            self.test,
        )
        summary["loss_curve"] = diag.shape(status == "diverged") if status in ("ok", "diverged") else None
        if exp.masks:  # prune.source: what is left, measured on the weights trained
            zeros = sum(int((w == 0).sum()) for w, _ in exp.masks)
            total = sum(w.numel() for w, _ in exp.masks)
            p = exp.config["prune"]
            summary["pruned"] = {**p, "weights_left": total - zeros, "weights": total, "zero_fraction": zeros / total}
        if diag.pretrain:
            summary["pretrain"] = {
                "method": exp.pretrain.method,
                "epochs_per_stage": exp.pretrain.epochs,
                "stages": diag.pretrain,
            }
        if self.stop.signal is not None:
            name = signals.Signals(self.stop.signal).name
            if status == "interrupted":
                summary["signal"] = name
            else:  # it came after the last step: the run is complete, and says so
                self.tracker.log(f"{name} arrived after the last step: the run was complete and closes as {status}")
        self.tracker.log(summary_text(summary))
        return summary


def _shares(weights: dict, model: torch.nn.Module) -> bool:
    """Whether a state's weights are the model's own tensors (a run alone's state: they moved on since)."""
    live = {t.untyped_storage().data_ptr() for t in model.state_dict().values()}
    return any(t.untyped_storage().data_ptr() in live for t in weights.values())


def _end_epoch(exp: Experiment, tracker: Tracker, epoch: int, loop: Position, elapsed: float, val: dict | None) -> dict:
    """The epoch's metrics (with the validation's, where due), logged; the plateau schedule; a regression's fit."""
    t, data, step, count = exp.trainer, exp.data, loop.step, loop.count
    metrics = {f"{k}/train": v for k, v in epoch_metrics(data.kind, loop.sums, count).items()}
    metrics.update({f"{k}/val": v for k, v in (val or {}).items()})
    metrics.update({"time/epoch_s": elapsed, "throughput/examples_per_s": count / elapsed})
    tracker.epoch_scalars(epoch, step, metrics)
    if per_epoch(exp.scheduler) and "loss/val" in metrics:
        exp.scheduler.step(metrics["loss/val"])
    if data.kind == "regression" and data.in_shape[0] <= 2 and (epoch % t.boundary_every == 0 or epoch == t.epochs):
        tracker.image(
            "regression_fit", figures.regression_fit(exp.model, exp.loss_fn.link, data.train.x, data.train.y), step
        )
    return metrics


def _finish(exp, run_dir, tracker, monitor, last_metrics, epoch, step, wall_time, status, alarms, initial_loss, test):
    """The summary: the last epoch's metrics and `test` (the best checkpoint's: model selection on the
    monitored metric; None: not tested), logged."""
    best_path = run_dir / "checkpoints" / "best.pt"
    names = ("loss", *task_metrics.names(exp.data.kind))
    final = {k: v for k, v in last_metrics.items() if k.split("/")[0] in names}
    if test is not None:
        final.update(test)
        tracker.epoch_scalars(epoch, step, test)
    hparams = hparams_of(exp.config)
    tracker.hparams(
        hparams, final, experiment=not exp.config.get("overview")
    )  # a sweep's, outputs/runs': tracking.overview()
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
        "update": exp.update,
        "torch_threads": torch.get_num_threads(),
        "seed": exp.trainer.seed,
        "model": model_summary(exp.model),
        "hparams": hparams,
        "run_dir": str(run_dir),
        "checkpoints": {"last": "checkpoints/last.pt", "best": "checkpoints/best.pt" if best_path.exists() else None},
    }
    return summary
