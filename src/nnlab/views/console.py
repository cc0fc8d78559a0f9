"""The terminal: rich progress bars while training, one line per epoch, a closing table, and the
one-paragraph error message for user errors."""

from __future__ import annotations

import io
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

_MARKUP = re.compile(r"(?<!\\)\[(?:/|[a-z#])")  # a rich tag ([bold], [/]): text with markup is rich's to wrap


def fold(text: str, width: int, indent: int | None = None) -> str:
    """`text` in lines of at most `width` columns, broken between words, and inside a word longer than a
    line (a path, a list of settings) only after a `/`, `,` or `=`, never inside a name. Continuation lines are
    indented by the text's own indent plus two (or `indent`)."""
    lead = len(text) - len(text.lstrip(" "))
    pad = " " * (lead + 2 if indent is None else indent)
    lines, line = [], text[:lead]
    for word in re.findall(r"\S+\s*", text[lead:]):
        pieces = [word] if len(word.rstrip()) <= width - len(pad) else re.findall(r"[^/,=]*[/,=]\s*|[^/,=]+\s*$", word)
        for piece in pieces:
            if len(line.rstrip()) + len(piece.rstrip()) > width and line.strip():
                lines.append(line.rstrip())
                line = pad
            line += piece
    lines.append(line.rstrip())
    return "\n".join(lines)


class _Console(Console):
    """rich's Console, where a line printed unwrapped (soft_wrap=True) is folded in a terminal by fold():
    between words and path segments, never inside them; into a file or pipe it stays one line (for grep)."""

    def print(self, *objects, soft_wrap: bool | None = None, **kwargs) -> None:
        if soft_wrap and self.is_terminal and len(objects) == 1 and isinstance(objects[0], str):
            text = objects[0]
            if not _MARKUP.search(text):
                objects = ("\n".join(fold(line, self.width) for line in text.split("\n")),)
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


console = _Console(highlight=False)
err_console = _Console(stderr=True, highlight=False)
live = True  # live progress bars in a terminal; off in a sweep's group trained beside others (launcher workers.py)


def printable(text: Any) -> str:
    """Control characters (escape sequences that would retitle or recolour a terminal) written out visibly, as \\x1b."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def shown(text: Any) -> str:
    """Text that came from a file or a folder name (a run's name, path, status, alarms) as the terminal may
    show it: printable(), and rich markup ([bold], [link=...]) escaped, so it is printed as it is."""
    return escape(printable(text))


def error(message: str, title: str = "error") -> None:
    """One paragraph on stderr: wrapped between words in a terminal, one line into a file or pipe."""
    _paragraph(err_console, f"nnlab {title}:", "bold red", message)


def warning(message: str) -> None:
    _paragraph(console, "warning:", "bold yellow", message)


def _paragraph(out: Console, title: str, style: str, message: str) -> None:
    """`title message` as one paragraph: folded in a terminal (fold: paths broken after `/` only), one line
    into a file or pipe."""
    text = f"{title} {printable(message)}"
    if out.is_terminal:
        text = fold(text, out.width, indent=0)
    out.print(f"[{style}]{title}[/]{escape(text[len(title) :])}", soft_wrap=True)


class TrainingProgress:
    """One line while training that fits any terminal from 60 columns: the epoch, a bar over the whole run,
    the steps done of all, the speed and the time left (and the live loss where there is room); each
    epoch's metrics on a line of their own, kept above it. A stack of runs (`stack`: e.g. "stack 2/5")
    has that label first and, where there is room, its members running and stopped and the best and
    worst of their current metric instead of the epoch lines."""

    def __init__(
        self,
        epochs: int,
        steps_per_epoch: int,
        enabled: bool = True,
        done: int = 0,
        out: Console | None = None,
        stack: str | None = None,
        lines: bool = True,
    ):
        self.enabled, self.epochs, self.stack = enabled, epochs, stack
        self.lines = lines and stack is None  # each epoch's line (a run alone that is not one of a sweep's)
        self.out = out or console
        columns = [
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            _Speed(self.out.width >= 80),
            TimeRemainingColumn(),
        ]
        if stack is not None:
            columns.insert(0, TextColumn(escape(stack)))
        if self.out.width >= 100:
            columns.append(TextColumn("{task.fields[info]}"))
        self.bars = Progress(
            *columns,
            console=self.out,
            expand=True,
            disable=not enabled or not live or not self.out.is_terminal,
            transient=not self.lines,  # a sweep's: gone when done, its line per setting says how it ended
        )
        first = done // max(1, steps_per_epoch) + 1
        self.task = self.bars.add_task(
            "train",
            total=epochs * steps_per_epoch,
            completed=done,
            epoch=f"{min(first, epochs):>{len(str(epochs))}}/{epochs}",
            info="",
        )

    def __enter__(self):
        self.bars.start()
        return self

    def __exit__(self, *exc):
        self.bars.stop()

    def batch(self, loss: float | None = None) -> None:
        if self.bars.disable:
            return
        if loss is None:
            self.bars.advance(self.task)
        else:
            self.bars.update(self.task, advance=1, info=f"loss {loss:.4f}")

    def epoch(self, epoch: int, metrics: Mapping[str, float], info: str | None = None) -> None:
        """An epoch ended: its line (a run alone), or `info` on the bar (a stack: stack_info())."""
        nxt = min(epoch + 1, self.epochs)
        self.bars.update(
            self.task, epoch=f"{nxt:>{len(str(self.epochs))}}/{self.epochs}", **({"info": info} if info else {})
        )
        if self.enabled and self.lines:
            self.out.print(epoch_line(epoch, metrics, self.out.width), soft_wrap=True, highlight=False)


def stack_info(running: int, stopped: int, metric: str, values: list[float]) -> str:
    """`14 running, 2 stopped  loss/val best 0.0912 worst 0.2301` (of the members' current values)."""
    from nnlab.metrics import better

    text = f"{running} running" + (f", {stopped} stopped" if stopped else "")
    values = [v for v in values if v == v]
    if values:
        best, worst = (max(values), min(values)) if better(metric) > 0 else (min(values), max(values))
        text += f"  {metric} best {best:.4f} worst {worst:.4f}"
    return text


class _Speed(ProgressColumn):
    """Steps per second (rich's estimate over the last 30 s): `850 steps/s`, `12k/s` when narrow."""

    def __init__(self, wide: bool):
        from rich.table import Column

        super().__init__(table_column=Column(no_wrap=True))
        self.unit = " steps/s" if wide else "/s"

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("")
        number = f"{speed:.1f}" if speed < 10 else f"{speed:.0f}" if speed < 1e4 else f"{speed / 1e3:.0f}k"
        return Text(number + self.unit)


def epoch_line(epoch: int, metrics: Mapping[str, float], width: int = 120) -> str:
    """`epoch   3  loss/train 0.4038  acc/train 0.8037  loss/val ...`; under 90 columns the short form
    `epoch   3  loss 0.4038 (val 0.4100)  acc 0.8037 (val 0.8000)` (60 columns)."""
    if width >= 90:
        return f"epoch {epoch:>3}  {_short(metrics)}"
    parts = []
    for m in ("loss", "acc", "mse", "r2"):
        if f"{m}/train" in metrics:
            val = metrics.get(f"{m}/val")
            parts.append(f"{m} {metrics[f'{m}/train']:.4f}" + ("" if val is None else f" (val {val:.4f})"))
    return f"epoch {epoch:>3}  " + "  ".join(parts)


def _short(metrics: Mapping[str, float]) -> str:
    keys = [f"{m}/{split}" for split in ("train", "val") for m in ("loss", "acc", "mse", "r2")]
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)


def summary_table(summary: Mapping[str, Any]) -> None:
    _table(summary, console)


def _table(summary: Mapping[str, Any], console: Console) -> None:
    table = Table(title=f"nnlab run: {summary['status']}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("measured on")
    last, best = summary.get("epochs_run"), summary.get("best_epoch")
    tested = "last epoch" if best is None or summary.get("monitor") == "last" else f"best checkpoint (epoch {best})"
    for key, value in summary["metrics"].items():  # train/val: the last epoch's; test: the best checkpoint's
        where = tested if key.endswith("/test") else f"epoch {last}"
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value), where)
    best_epoch = summary.get("best_epoch")
    table.add_row(
        "best epoch",
        "-" if best_epoch is None else str(best_epoch),
        "" if best_epoch is not None else _no_best(summary),
    )
    table.add_row("epochs run", str(summary["epochs_run"]))
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    console.print(table)
    console.print(f"run directory: {shown(summary['run_dir'])}", soft_wrap=True)
    console.print(f"  {shown(tensorboard_command(summary['run_dir']))}", soft_wrap=True)


def tensorboard_command(run_dir: str | Path) -> str:
    """The command that shows a run in TensorBoard under its own name: its parent folder as the log
    directory (a run folder given as the log directory itself is named `.` there)."""
    return f"tensorboard --logdir {Path(run_dir).parent}"


def _no_best(summary: Mapping[str, Any]) -> str:
    """Why a run has no best epoch: none ended, or it diverged before the monitored metric was measured."""
    if not summary.get("epochs_run"):
        return "no epoch ended"
    return f"none ({summary.get('status')})" if summary.get("status") != "ok" else "not monitored"


def summary_text(summary: Mapping[str, Any]) -> str:
    """The closing table as plain text (for train.log)."""

    plain = Console(width=100, file=io.StringIO(), color_system=None)
    _table(summary, plain)
    return plain.file.getvalue().rstrip()


def result_line(name: str, status: str, metrics: Mapping[str, float]) -> str:
    """A run's closing line in a sweep: `  NAME: STATUS  loss/test 0.1234  acc/test 0.9750` (numbers only:
    a summary read from disk may hold anything)."""
    score = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.endswith("/test") and isinstance(v, (int, float)))
    return f"  {shown(name)}: {shown(status)}  {score}".rstrip()


_interrupted = 0  # the signal that interrupted start-up or closing (SIGINT, SIGTERM), 0: none
_deferred = False  # while Hydra composes configs: a signal is noted, acted on at the next safe point


def note_interrupt(signum=None, frame=None) -> None:
    """The SIGINT and SIGTERM handler of `nnlab` outside the training loop (which saves and stops on
    them itself): remember the signal, then interrupt as Python does for Ctrl-C. A library that swallows
    the KeyboardInterrupt (an optional import in try/except ImportError: a C extension cut short raises
    ImportError) cannot lose it: check_interrupt() raises it again."""

    global _interrupted
    _interrupted = signum or signal.SIGINT
    if not _deferred:
        raise KeyboardInterrupt


def defer_interrupts(deferred: bool, act: bool = True) -> None:
    """While Hydra composes configs, a signal is only noted: OmegaConf's state changes are not safe to cut
    short (a KeyboardInterrupt inside one leaves a broken config, and Hydra prints its traceback). Turned
    off at the next safe point (a job's start, the command's end), where a noted signal interrupts
    (`act`: False where the command is ending anyway)."""
    global _deferred
    _deferred = deferred
    if not deferred and act:
        check_interrupt()


def interrupted() -> int:
    """The signal that interrupted this process outside the loop (0: none)."""
    return int(_interrupted)


def check_interrupt() -> None:
    if _interrupted:
        raise KeyboardInterrupt


def exit_with(message: str, code: int = 2) -> None:
    error(message)
    sys.exit(code)
