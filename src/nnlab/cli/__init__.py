"""`nnlab` and its subcommands. Imports are deferred so that `nnlab --help` is instant."""

from __future__ import annotations

import sys

USAGE = """usage: nnlab [--version] [--help] COMMAND [ARGS...]

Run the classic 'training neural networks' experiments from Hydra configs.

commands:
  train            train a network: nnlab train [GROUP=OPTION ...] [KEY=VALUE ...] [-m] [--cfg job] [--help]
  check            the babysitting checks on a config: initial loss, regularization, overfit a tiny
                   subset, gradient flow (exit code 1 when one fails)
  lr-find          learning-rate range test: loss against an exponentially growing rate, a suggested rate
  batch-size-find  the largest batch size that fits in memory, and the rate scaled with it (linear rule)
  doctor           a run's alarms, their fixes trained over seeds against the config as it is: which
                   fix helps (nnlab doctor [OVERRIDES] | nnlab doctor RUN_FOLDER)
  report           compare the runs under a folder: nnlab report PATH [--sort acc/val] [--out DIR]
  ensemble         average the predictions of the runs under a folder (e.g. seeds): nnlab ensemble PATH
  prune            magnitude pruning of a run (or every run under a folder), then a short fine-tune:
                   nnlab prune RUN prune.amount=0.9
  completion       tab completion for bash/zsh: eval "$(nnlab completion bash)" (in ~/.bashrc to keep it)

examples:
  nnlab train                                  toy 2-D moons, MLP, ReLU, Adam (about 10 s on a CPU)
  nnlab train data=mnist trainer.epochs=5      MNIST
  nnlab train -m activation=relu,tanh,sigmoid  a sweep, one run directory per option
  nnlab train data=sine loss=huber             regression (MSE, MAE, R^2 in place of accuracy)
  nnlab train --help                           every config group and option
  nnlab check model.hidden=[4]                 does this config train at all?
  nnlab lr-find data=mnist optimizer=sgd       which learning rate?
  nnlab doctor init=zeros                      what is wrong, and which fix helps (a band over 5 seeds each)
  nnlab train -m experiment=activations        a lecture experiment, then: nnlab report outputs/sweeps/DATE_TIME
  tensorboard --logdir outputs                 watch the runs
"""


from nnlab.cli.completion import COMMANDS  # noqa: E402  (the subcommands: the shell completes them too)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] in ("-V", "--version") or (argv[0] in COMMANDS and ("--version" in argv or "-V" in argv)):
        from nnlab import __version__

        print(f"nnlab {__version__}")  # nnlab's, also after a command (Hydra would print its own)
        return 0
    if argv[0] in ("completion", "__complete"):
        from nnlab.cli.completion import main as completion

        return completion(argv)
    import signal

    from nnlab.views.console import interrupted, note_interrupt

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, note_interrupt)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # outside the loop too: one line, no half-made folder
        signal.signal(signal.SIGTERM, note_interrupt)
    import threading

    threading.excepthook = _thread_failed
    try:
        return _main(argv)
    except BrokenPipeError:  # the reader went away (nnlab train --help | head -1): quietly, as the shell's own tools
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:  # a signal before training began or while closing (the loop itself saves and stops)
        return _interrupted_exit(interrupted() or signal.SIGINT)
    except Exception:
        if not interrupted():
            raise
        return _interrupted_exit(interrupted())  # Ctrl-C cut an import short: its error is that Ctrl-C


def _thread_failed(args) -> None:
    """A library's background thread that fails (TensorBoard's event writer on a full disk): one line, not
    its traceback; the command's own error (the same disk failing the run's next write) says the rest."""
    from nnlab.views.console import err_console, shown

    if args.exc_type is SystemExit:
        return
    name = (
        "TensorBoard's event writer"
        if "AsyncWriter" in type(args.thread).__name__
        else f"thread {getattr(args.thread, 'name', '?')}"
    )
    what = f"{args.exc_type.__name__}: {getattr(args.exc_value, 'strerror', None) or args.exc_value}"
    err_console.print(
        f"nnlab: {shown(name)} stopped ({shown(what)}); the run's TensorBoard log may lack its last records.",
        soft_wrap=True,
        highlight=False,
    )


def _interrupted_exit(signum: int) -> int:
    """One line, the shell's exit code for the signal (130, 143); a run interrupted while closing has no
    summary.json and resumes (the folder a command made and left holding nothing: _hydra removed it)."""
    import signal

    print(f"nnlab: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    return 128 + int(signum)


def _main(argv: list[str], brief: bool = False) -> int:
    """A command; `brief`: a run says one line, a sweep's closing report is written to its files, not printed (nnlab doctor
    prints its own)."""
    command, rest = argv[0], argv[1:]
    if command == "train":
        return _hydra("train", rest, brief=brief)
    if command in ("check", "lr-find", "batch-size-find"):
        return _hydra(command, rest, default_dir=command.replace("-", "_"))
    if command == "doctor":
        from nnlab.commands.doctor import main as doctor

        return doctor(rest, lambda args, brief=False: _main(["train", *args], brief))
    if command == "prune":
        from nnlab.commands.prune import main as prune

        return prune(rest, lambda args: _main(["train", *args]))
    if command == "ensemble":
        from nnlab.commands.ensemble import main as ensemble

        return ensemble(rest)
    if command == "report":
        from nnlab.commands.report import main as report

        return report(rest)
    import difflib

    close = difflib.get_close_matches(command, COMMANDS, n=1)
    hint = f" Did you mean `nnlab {close[0]}`?" if close else ""
    print(f"nnlab: unknown command {command!r}.{hint}\n", file=sys.stderr)
    print(USAGE, end="", file=sys.stderr)
    return 2


def _hydra(command: str, args: list[str], default_dir: str | None = None, brief: bool = False) -> int:
    """Hand the arguments to Hydra (composition, --help, --cfg, -m, sweepers and launchers) with the
    command's jobs.Task, once the whole command line is checked (the pre-flight). Commands other than train
    keep their run directories apart: outputs/DEFAULT_DIR/DATE_TIME."""
    from nnlab.jobs.task import TASKS, Session

    session = Session(brief=brief)
    try:
        return _compose_and_run(TASKS[command](session), f"nnlab {command}", args, default_dir)
    except KeyboardInterrupt:
        session.remove_made()
        raise
    except Exception:
        from nnlab.views.console import interrupted

        if interrupted():  # Ctrl-C cut an import short
            session.remove_made()
        raise
    finally:
        from nnlab.views.console import defer_interrupts

        defer_interrupts(False, act=False)  # (a command that ended inside Hydra)
        session.release()


def _compose_and_run(task, prog: str, args: list[str], default_dir: str | None) -> int:
    import hydra

    from nnlab.cli.preflight import MODES, options_first, preflight
    from nnlab.config.schema import register_configs
    from nnlab.errors import ConfigError
    from nnlab.views.console import error, exit_with

    completion = next((a for i, a in enumerate(args) if i and args[i - 1] in ("-sc", "--shell-completion")), None)
    if completion is not None:  # Hydra's would register the subcommand as a command of its own: nnlab's instead
        from nnlab.cli import completion as shell

        if completion.startswith("query="):
            return shell.main(["__complete"])
        return shell.main(["completion", completion.partition("=")[2] or "bash"])
    if prog != "nnlab train" and any(a in ("-h", "--help") for a in args):
        print(_command_help(prog), end="")
        return 0
    modes = {m for a in args for m, names in MODES.items() if a in names}
    if len(modes) > 1:
        exit_with(
            f"{' and '.join(sorted(modes))} cannot go together: one of -m, --cfg, --info at a time (for a "
            "sweep's config: nnlab train --cfg job with one value of each swept key)."
        )
    register_configs()
    if default_dir and not any(a.startswith("hydra.run.dir=") for a in args):
        args = [*args, f"hydra.run.dir=outputs/{default_dir}/${{now:%Y-%m-%d_%H-%M-%S}}"]
    try:
        args, finished = preflight(args, task.session)
    except ConfigError as e:
        task.session.remove_made()  # a folder the pre-flight made before the refusal: gone again
        exit_with(str(e))
    if finished:
        return 0
    from nnlab.views.console import check_interrupt, defer_interrupts

    check_interrupt()
    sys.argv = [prog, *options_first(args)]
    try:
        defer_interrupts(True)  # until a job starts (jobs.Task.guarded), or Hydra is done
        hydra.main(config_path="pkg://nnlab.conf", config_name="train", version_base="1.3")(task)()
        defer_interrupts(False)
        return _closing(task)
    except BrokenPipeError:
        raise  # the reader of the output went away (nnlab train --help | head -1): main's
    except OSError as e:  # Hydra making the output folder: a name too long, a file system that refuses it
        error(
            f"cannot create the output folder {e.filename or ''}: {e.strerror or e}. Choose another one with "
            "hydra.run.dir=PATH (hydra.sweep.dir=PATH with -m).",
            title="cannot write",
        )
        return 1
    return 0


def _command_help(prog: str) -> str:
    """`nnlab check --help` and the other commands': what the command does (its module's docstring, read
    without importing torch), how to call it; the settings are nnlab train's."""
    import ast
    import importlib.util

    module = {
        "nnlab check": "nnlab.commands.check",
        "nnlab lr-find": "nnlab.commands.lr_find",
        "nnlab batch-size-find": "nnlab.commands.batch_size_find",
    }[prog]
    with open(importlib.util.find_spec(module).origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return (
        f"usage: {prog} [GROUP=OPTION ...] [KEY=VALUE ...] [-m] [--cfg job]\n\n{doc.replace('`', '')}\n\n"
        f"The config groups and settings are those of nnlab train (nnlab train --help lists them all); the "
        f"folder: outputs/{module.rpartition('.')[2]}/DATE_TIME unless hydra.run.dir=PATH.\n"
    )


def _closing(task) -> int:
    """What a command ends with beside its runs: for `nnlab train`, a sweep's summary and overview, or the
    overview of the folder of runs alone it ran in; a sweep's failed jobs said (exit 1)."""
    from nnlab.errors import ConfigError
    from nnlab.jobs.task import Train
    from nnlab.views.console import error, exit_with

    session, trained = task.session, isinstance(task, Train)
    sweep, failed = session.sweep, session.failures
    folder = sweep if sweep is not None else session.runs  # one of them: a sweep, or a run alone named by its time
    try:
        if trained and folder is not None and folder.is_dir():
            from nnlab.run_files.tracking import overview

            if folder == sweep:
                from nnlab.commands.report import sweep_summary

                sweep_summary(sweep, session.brief)
            overview(folder, sweep=folder == sweep)
    except ConfigError as e:  # a link where the overview goes: refused, the runs' own results stand
        exit_with(str(e))
    if sweep is not None and failed and not trained:  # nnlab check -m: configs that did not pass
        error(
            f"{len(failed)} of the sweep's configs did not pass: {'; '.join(failed[:5])}"
            f"{'; ...' if len(failed) > 5 else ''} (each folder's check.json says which step and why).",
            title="check",
        )
        return 1
    if sweep is not None and failed:
        n = len(failed)
        error(
            f"{n} job{'s' if n > 1 else ''} of the sweep failed or {'were' if n > 1 else 'was'} refused "
            f"({'; '.join(failed[:5])}{'; ...' if len(failed) > 5 else ''}): each folder's error.txt says "
            f"why; the others' results stand. Continue with the same command and resume=auto.",
            title="sweep",
        )
        return 1
    return 0
