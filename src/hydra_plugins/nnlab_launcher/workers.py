"""`hydra.launcher.workers`: the local executor's groups trained several at once, each in a process of its
own forked from the launcher's (its imports, Hydra's state and the composed configs come with it, nothing is
paid twice), at most `workers` at a time. A stack of toy runs trains on one thread, so a 2-core machine trains
two stacks in the time of one: a sweep of 256 seeds (four stacks of 64) takes ~0.6x the wall time of one
stack after another. `auto` (the default): one process per core, at most one per group, where a training
sweep has several groups, trains on the CPU and goes on past a failure (sweep.on_failure=continue); else 1,
this process, one group after another.

Each group's process is what the launcher's own process would be for it (jobs.task.run_group: its members'
folders, their training, their lines), but for the terminal: what it prints is kept and said by the launcher
as one block when it ends, in the groups' order (no live progress bar). What comes back is each member's
JobReturn and Outcome. A group whose process dies (killed, out of memory) loses only
its members, said failed with why (the same command with resume=auto trains them again); the others stand.
A signal (Ctrl-C, SIGTERM to the launcher) reaches every group's process, each saves its members'
checkpoints and stops, and no new group starts: the sweep then exits as one that trains in one process does
(128 + the signal), as it does for sweep.on_failure=stop once the running groups end. A group's process ends
with the launcher's (Linux: it is sent SIGTERM when the launcher dies, and saves).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import tempfile
from collections.abc import Callable

from omegaconf import DictConfig


def how_many(setting: int | str, configs: list[DictConfig], groups: int) -> int:
    """The number of groups trained at once: `setting` (hydra.launcher.workers) where a number, else
    (auto) one per core, at most one per group, where every job trains on the CPU and the sweep goes on
    past a failure (sweep.on_failure=stop ends it at the first: one group after another); else 1."""
    if isinstance(setting, int):
        return max(1, min(setting, groups))
    if groups < 2 or any(c.sweep.on_failure == "stop" or not _on_cpu(str(c.trainer.device)) for c in configs):
        return 1
    return max(1, min(os.cpu_count() or 1, groups))


def _on_cpu(device: str) -> bool:
    if device == "cpu":
        return True
    if device != "auto":
        return False
    import torch

    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def train_groups(run: Callable, groups: list[list[DictConfig]], workers: int, said: Callable) -> list:
    """`run(n)` (jobs.task.run_group of group n: its JobReturns and Outcomes) for every group, `workers`
    processes at a time; each group's result, in order: (returns, outcomes), or why its process gave none
    (a string: it died). What a group's process prints is kept and said as one block once it ends, the
    blocks in the groups' order (`said(n)` first: its label), so the terminal reads as one process's would.
    Exits as a group's process did where one exited (a signal, sweep.on_failure=stop), once every running
    group has ended; no new group starts after it."""
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("fork")
    pending, running, results = list(range(len(groups))), {}, [None] * len(groups)
    outputs: dict[int, tuple] = {}
    ended, next_said, exit_code = set(), 0, None
    with _Forward(running) as forward:
        while pending or running:
            while pending and len(running) < workers and exit_code is None and forward.signal is None:
                n = pending.pop(0)
                outputs[n] = (tempfile.TemporaryFile(), tempfile.TemporaryFile())
                sys.stdout.flush()
                sys.stderr.flush()
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_group, args=(run, n, send, outputs[n], os.getpid(), forward.previous))
                process.start()
                send.close()
                running[receive] = (n, process)
            if not running:
                break
            for conn in wait(list(running)):
                n, process = running.pop(conn)
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    message = None
                conn.close()
                process.join()
                if message is None:
                    results[n] = _died(process.exitcode)
                elif message[0] == "exit":
                    exit_code = max(exit_code or 0, message[1])
                else:
                    results[n] = message[1]
                ended.add(n)
            while next_said in ended:  # each ended group's block, in order (groups start in order: all said)
                said(next_said)
                _say(*outputs.pop(next_said))
                next_said += 1
    if exit_code is None and forward.signal is not None:
        exit_code = 128 + forward.signal
    if exit_code is not None:  # (the groups not started: resume=auto trains them)
        sys.exit(exit_code)
    return results


def _say(out, err) -> None:
    """A group's process's output, on this process's stdout and stderr."""
    for kept, stream in ((out, sys.stdout), (err, sys.stderr)):
        kept.seek(0)
        text = kept.read().decode("utf-8", errors="replace")
        kept.close()
        if text:
            stream.write(text)
            stream.flush()


def _died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"its process was killed by {signal.Signals(-exitcode).name}"
    return f"its process ended with exit code {exitcode} before it said how its runs ended"


def _group(run: Callable, n: int, send, output: tuple, parent: int, handlers: dict) -> None:
    """A group's process: the launcher's signal handlers back, SIGTERM when the launcher dies, its output
    kept (`output`: two files, said by the launcher once it ends), no live progress; run the group, send
    back its result (or how it stopped the sweep)."""
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    _end_with(parent)
    for kept, fd in zip(output, (1, 2)):
        os.dup2(kept.fileno(), fd)
    from nnlab.views import console

    console.live = False
    try:
        send.send(("done", run(n)))
    except SystemExit as e:  # jobs.task: a signal stopped the group, or sweep.on_failure=stop
        send.send(("exit", e.code if isinstance(e.code, int) else 1))
    except KeyboardInterrupt:  # a signal while its members were being prepared
        send.send(("exit", 130))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        send.close()


def _end_with(parent: int) -> None:
    """SIGTERM to this process when the launcher's ends (Linux; elsewhere a group outlives a killed
    launcher and ends as it would have)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


class _Forward:
    """While groups train in their processes: SIGINT and SIGTERM noted here and sent on to each of them
    (each saves and stops); `previous`: the handlers they had, which a group's process takes back."""

    def __init__(self, running: dict) -> None:
        self.running, self.signal, self.previous = running, None, {}

    def __enter__(self) -> _Forward:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.signal = self.signal or signum
        for _, process in list(self.running.values()):
            try:
                os.kill(process.pid, signum)
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
