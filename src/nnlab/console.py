"""The terminal: rich progress bars while training, one line per epoch, a closing table, and the
one-paragraph error message for user errors."""

from __future__ import annotations

import sys
from typing import Any, Mapping

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def error(message: str, title: str = "error") -> None:
    err_console.print(f"[bold red]nnlab {title}:[/] {escape(message)}", soft_wrap=True)


def warning(message: str) -> None:
    console.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


class TrainingProgress:
    """Two bars, epochs and batches of the current epoch, with the live training loss."""

    def __init__(self, epochs: int, steps_per_epoch: int, enabled: bool = True):
        self.enabled = enabled
        self.steps_per_epoch = steps_per_epoch
        self.bars = Progress(
            TextColumn("{task.description:>7}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled or not console.is_terminal,
        )
        self.epochs = self.bars.add_task("epoch", total=epochs, info="")
        self.batches = self.bars.add_task("batch", total=steps_per_epoch, info="")

    def __enter__(self):
        self.bars.start()
        return self

    def __exit__(self, *exc):
        self.bars.stop()

    def batch(self, loss: float | None = None) -> None:
        if self.bars.disable:
            return
        if loss is None:
            self.bars.advance(self.batches)
        else:
            self.bars.update(self.batches, advance=1, info=f"loss {loss:.4f}")

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.bars.update(self.epochs, advance=1, info=_short(metrics))
        self.bars.reset(self.batches, total=self.steps_per_epoch, info="")
        if self.enabled:
            self.bars.console.print(f"epoch {epoch:>3}  {_short(metrics)}")


def _short(metrics: Mapping[str, float]) -> str:
    keys = [f"{m}/{split}" for split in ("train", "val") for m in ("loss", "acc", "mse", "r2")]
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)


def summary_table(summary: Mapping[str, Any]) -> None:
    table = Table(title=f"nnlab run: {summary['status']}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary["metrics"].items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    table.add_row("best epoch", str(summary.get("best_epoch")))
    table.add_row("epochs run", str(summary["epochs_run"]))
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    console.print(table)
    console.print(f"run directory: [bold]{summary['run_dir']}[/]", soft_wrap=True)
    console.print(f"  tensorboard --logdir {summary['run_dir']}", soft_wrap=True)


_interrupted = False


def note_interrupt(signum=None, frame=None) -> None:
    """The SIGINT handler of `nnlab` before training: remember the Ctrl-C, then interrupt as Python does.
    A library that swallows the KeyboardInterrupt (an optional import in try/except ImportError: a C
    extension cut short raises ImportError) cannot lose it: check_interrupt() raises it again."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def interrupted() -> bool:
    return _interrupted


def check_interrupt() -> None:
    if _interrupted:
        raise KeyboardInterrupt


def exit_with(message: str, code: int = 2) -> None:
    error(message)
    sys.exit(code)
