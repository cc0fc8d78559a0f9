"""What a run in training keeps besides its torch objects (train.Training holds them): where the loop is
(Position, saved with every checkpoint), the best value of the monitored metric and early stopping
(Monitor), and a signal to save and stop on (StopRequest)."""

from __future__ import annotations

import math
import signal
import threading

import torch

from nnlab import metrics as task_metrics
from nnlab.config.schema import EarlyStoppingConfig


class Monitor:
    """Best value of the monitored metric, and early stopping on it."""

    def __init__(self, cfg: EarlyStoppingConfig):
        self.metric, self.patience, self.min_delta = cfg.metric, cfg.patience, cfg.min_delta
        self.sign = 0 if self.metric == "last" else -task_metrics.better(self.metric)  # losses go down, accuracy up
        self.best, self.best_epoch, self.bad_epochs = math.inf, None, 0

    def watches(self, metrics: dict[str, float]) -> bool:
        """Whether this epoch's metrics say anything to the monitor (`last`: every epoch does)."""
        return self.metric == "last" or self.metric in metrics

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record an epoch; True when it is the best so far (`last`: always)."""
        if self.metric == "last":
            self.best_epoch = epoch
            return True
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
        self.signal: int | None = None
        self.previous: dict = {}

    def __enter__(self):

        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc):

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Trail:
    """The per-step data loss and gradient norm of a stack's K members (a run alone: K = 1): one [K, 2] row a
    step, kept on the device; the first member to flush a window reads every member's rows back at once
    (one host sync), the others take their column. Cleared at each epoch's end, when every member has
    flushed; `first` is the step of its first row (members of a stack step together)."""

    def __init__(self) -> None:
        self.clear()

    def add(self, step: int, losses: torch.Tensor, norms: torch.Tensor) -> None:
        if self.first is None:
            self.first = step
        self.pending.append(torch.stack([losses.detach().float(), norms.detach().float()], 1))

    def rows(self, k: int, start: int, end: int) -> list[list[float]]:
        """Member k's [loss, gradient norm] of steps start..end."""
        if self.pending:
            self.host += torch.stack(self.pending).tolist()
            self.pending = []
        return [self.host[s - self.first][k] for s in range(start, end + 1)]

    def clear(self) -> None:
        self.first: int | None = None
        self.pending: list[torch.Tensor] = []
        self.host: list[list[list[float]]] = []


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

    def add(self, n: int) -> None:
        """A step of n examples (its batch_sums were added to `sums`, a row of the epoch's tally: steps.tally_step)."""
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
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "shuffle": self.shuffle_state,
            "sums": None if self.sums is None else self.sums.detach().to("cpu", copy=True),  # (a row the tally adds to)
            "count": self.count,
        }
