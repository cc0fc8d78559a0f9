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


from nnlab.completion import COMMANDS  # noqa: E402  (the subcommands: the shell completes them too)


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
        from nnlab.completion import main as completion

        return completion(argv)
    import signal

    from nnlab.console import interrupted, note_interrupt

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
    finally:
        _release()


def _thread_failed(args) -> None:
    """A library's background thread that fails (TensorBoard's event writer on a full disk): one line, not
    its traceback; the command's own error (the same disk failing the run's next write) says the rest."""
    from nnlab.console import err_console, shown

    if args.exc_type is SystemExit:
        return
    name = "TensorBoard's event writer" if "AsyncWriter" in type(args.thread).__name__ else f"thread {getattr(args.thread, 'name', '?')}"
    what = f"{args.exc_type.__name__}: {getattr(args.exc_value, 'strerror', None) or args.exc_value}"
    err_console.print(f"nnlab: {shown(name)} stopped ({shown(what)}); the run's TensorBoard log may lack its last records.",
                      soft_wrap=True, highlight=False)  # fmt: skip


def _interrupted_exit(signum: int) -> int:
    """One line, the shell's exit code for the signal (130, 143), and no folder this process made and left
    holding nothing but bookkeeping; a run interrupted while closing has no summary.json and resumes."""
    import signal

    from nnlab.run_folder import remove_made

    remove_made(_MADE)
    print(f"nnlab: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    return 128 + int(signum)


def _main(argv: list[str], brief: bool = False) -> int:
    """A command; `brief`: a sweep's closing report is written to its files, not printed (nnlab doctor
    prints its own)."""
    command, rest = argv[0], argv[1:]
    if command == "train":
        return _hydra(train_job, "nnlab train", rest, brief=brief)
    if command == "check":
        return _hydra(_check_job, "nnlab check", rest, default_dir="check")
    if command == "lr-find":
        return _hydra(_lr_find_job, "nnlab lr-find", rest, default_dir="lr_find")
    if command == "batch-size-find":
        return _hydra(_batch_size_find_job, "nnlab batch-size-find", rest, default_dir="batch_size_find")
    if command == "doctor":
        from nnlab.doctor import main as doctor

        return doctor(rest, lambda args, brief=False: _main(["train", *args], brief))
    if command == "ensemble":
        from nnlab.ensemble import main as ensemble

        return ensemble(rest)
    if command == "report":
        from nnlab.report import main as report

        return report(rest)
    import difflib

    close = difflib.get_close_matches(command, COMMANDS, n=1)
    hint = f" Did you mean `nnlab {close[0]}`?" if close else ""
    print(f"nnlab: unknown command {command!r}.{hint}\n", file=sys.stderr)
    print(USAGE, end="", file=sys.stderr)
    return 2


def _hydra(job, prog: str, args: list[str], default_dir: str | None = None, brief: bool = False) -> int:
    """Hand the arguments to Hydra (composition, --help, --cfg, -m, sweepers and launchers), once the
    whole command line is checked. Commands other than train keep their run directories apart:
    outputs/DEFAULT_DIR/DATE_TIME."""
    import hydra

    from nnlab.config import register_configs
    from nnlab.console import error, exit_with
    from nnlab.errors import ConfigError

    completion = next((a for i, a in enumerate(args) if i and args[i - 1] in ("-sc", "--shell-completion")), None)
    if completion is not None:  # Hydra's would register the subcommand as a command of its own: nnlab's instead
        from nnlab import completion as shell

        if completion.startswith("query="):
            return shell.main(["__complete"])
        return shell.main(["completion", completion.partition("=")[2] or "bash"])
    if prog != "nnlab train" and any(a in ("-h", "--help") for a in args):
        print(_command_help(prog), end="")
        return 0
    modes = {m for a in args for m, names in MODES.items() if a in names}
    if len(modes) > 1:
        exit_with(f"{' and '.join(sorted(modes))} cannot go together: one of -m, --cfg, --info at a time (for a "
                  "sweep's config: nnlab train --cfg job with one value of each swept key).")  # fmt: skip
    register_configs()
    if default_dir and not any(a.startswith("hydra.run.dir=") for a in args):
        args = [*args, f"hydra.run.dir=outputs/{default_dir}/${{now:%Y-%m-%d_%H-%M-%S}}"]
    try:
        args, finished = _preflight(args)
    except ConfigError as e:
        from nnlab.run_folder import remove_made

        remove_made(_MADE)  # a folder the pre-flight made before the refusal: gone again
        exit_with(str(e))
    if finished:
        return 0
    from nnlab.console import check_interrupt

    check_interrupt()
    sys.argv = [prog, *_options_first(args)]
    try:
        hydra.main(config_path="pkg://nnlab.conf", config_name="train", version_base="1.3")(job)()
        return _closing(job is train_job, brief)
    except BrokenPipeError:
        raise  # the reader of the output went away (nnlab train --help | head -1): main's
    except OSError as e:  # Hydra making the output folder: a name too long, a file system that refuses it
        error(f"cannot create the output folder {e.filename or ''}: {e.strerror or e}. Choose another one with "
              "hydra.run.dir=PATH (hydra.sweep.dir=PATH with -m).", title="cannot write")  # fmt: skip
        return 1
    return 0


def _command_help(prog: str) -> str:
    """`nnlab check --help` and the other commands': what the command does (its module's docstring, read
    without importing torch), how to call it; the settings are nnlab train's."""
    import ast
    import importlib.util

    module = {"nnlab check": "nnlab.check", "nnlab lr-find": "nnlab.lr_find", "nnlab batch-size-find": "nnlab.batch_size_find"}[prog]
    with open(importlib.util.find_spec(module).origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return (f"usage: {prog} [GROUP=OPTION ...] [KEY=VALUE ...] [-m] [--cfg job]\n\n{doc.replace('`', '')}\n\n"
            f"The config groups and settings are those of nnlab train (nnlab train --help lists them all); the "
            f"folder: outputs/{module.split('.')[1]}/DATE_TIME unless hydra.run.dir=PATH.\n")


def _closing(trained: bool, brief: bool) -> int:
    """What a command ends with beside its runs: for `nnlab train`, a sweep's summary and overview, or the
    overview of the folder of runs alone it ran in; a sweep's failed jobs said (exit 1)."""
    from nnlab.console import error, exit_with
    from nnlab.errors import FAILED_JOBS, ConfigError

    folder = _SWEEP if _SWEEP is not None else _RUNS  # one of them: a sweep, or a run alone named by its time
    try:
        if trained and folder is not None and folder.is_dir():
            from nnlab.tracking import overview

            if folder == _SWEEP:
                from nnlab.report import sweep_summary

                sweep_summary(_SWEEP, brief)
            overview(folder, sweep=folder == _SWEEP)
    except ConfigError as e:  # a link where the overview goes: refused, the runs' own results stand
        exit_with(str(e))
    if _SWEEP is not None and FAILED_JOBS and not trained:  # nnlab check -m: configs that did not pass
        error(f"{len(FAILED_JOBS)} of the sweep's configs did not pass: {'; '.join(FAILED_JOBS[:5])}"
              f"{'; ...' if len(FAILED_JOBS) > 5 else ''} (each folder's check.json says which step and why).", title="check")  # fmt: skip
        return 1
    if _SWEEP is not None and FAILED_JOBS:
        n = len(FAILED_JOBS)
        error(f"{n} job{'s' if n > 1 else ''} of the sweep failed or {'were' if n > 1 else 'was'} refused "
              f"({'; '.join(FAILED_JOBS[:5])}{'; ...' if len(FAILED_JOBS) > 5 else ''}): each folder's error.txt says "
              f"why; the others' results stand. Continue with the same command and resume=auto.", title="sweep")  # fmt: skip
        return 1
    return 0


MODES = {"-m": ("-m", "--multirun"), "--cfg": ("-c", "--cfg"), "--info": ("--info",)}  # Hydra runs one of them
INFO = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")  # what `--info` may name


def _options_first(args: list[str]) -> list[str]:
    """Hydra's options (-m, --cfg job, ...) before the overrides: argparse takes the overrides as one
    positional list, so an option between them (`nnlab train data=mnist --cfg job`, or the settings the
    pre-flight adds after it) would leave the rest unrecognized."""
    from nnlab.command_line import _FLAGS_WITH_VALUE

    options, overrides, last, i = [], [], [], 0
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            after = args[i + 1] if i + 1 < len(args) else ""
            takes = after in INFO if a == "--info" else a in _FLAGS_WITH_VALUE
            (last if a == "--info" and not takes else options).extend(args[i : i + 2] if takes else [a])
            i += 2 if takes else 1
        else:
            overrides.append(a)
            i += 1
    return [*options, *overrides, *last]  # a bare --info last: it would take the next word as its value


def _preflight(args: list[str]) -> tuple[list[str], bool]:
    """Check the command line before Hydra writes anything: every job's config, the output folder (not
    in use by another process), and a resume (the run it names, its checkpoint against this config).
    resume=RUN continues RUN in its own folder with its own saved overrides (the ones given here win).
    Returns the arguments to run, and True where there is nothing to do (a finished run)."""
    from pathlib import Path

    from nnlab import checkpoint
    from nnlab.command_line import check_command_line, grid_sweeper, override_key, quiet_optuna, quoted_path
    from nnlab.errors import ConfigError

    resume = next((a.split("=", 1)[1] for a in args if a.startswith("resume=")), None)
    run = checkpoint.run_of(resume) if resume not in (None, "auto", "null") else _run_to_continue(args) if resume == "auto" else None
    if run is not None:  # its own settings, from its saved config (saved_config: the run folder is data), then the given ones
        from nnlab.saved_config import run_overrides

        given = {override_key(a) for a in args if "=" in a}
        saved = [o for o in run_overrides(run) if override_key(o) not in given]
        args = [*saved, *args, *([] if "hydra.run.dir" in given else [f"hydra.run.dir={run}"])]
    args = grid_sweeper([quoted_path(a) for a in args], None)
    cfg, folder, sweeper, name_without = check_command_line(args)  # every job's config checked; the output folder
    multirun = any(a in ("-m", "--multirun") for a in args)
    if name_without and not any(a.startswith("hydra.job.config.override_dirname.exclude_keys=") for a in args):
        # a sweep's folders (and TensorBoard's run names) say what differs, not what every run shares
        args = [*args, f"hydra.job.config.override_dirname.exclude_keys=[{','.join(name_without)}]"]
    args = grid_sweeper(args, sweeper if multirun else "")
    quiet_optuna(sweeper if multirun else None)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = next((a.split("=", 1)[1] for a in reversed(args) if a.startswith(key + "=")), None)
    fresh = given is None or "${now" in given  # a default, time-stamped name
    global _SWEEP, _RUNS
    if cfg is not None and folder is not None and not any(a in ("-c", "--cfg") for a in args):
        # the folder is this process's before Hydra writes a byte into it (${now} resolved once)
        folder = str(_claim(folder, key, fresh=fresh, cfg=cfg, multirun=multirun, continuing=resume not in (None, "null")))
        alone = not multirun and (fresh or (Path(folder).parent / "overview").is_dir())  # in outputs/runs, or continued there
        _RUNS = Path(folder).parent if alone else None
    if folder is not None:
        args = [*(a for a in args if not a.startswith(key + "=")), quoted_path(f"{key}={folder}")]
    _SWEEP = Path(folder) if multirun and folder is not None else None
    if cfg is None or folder is None or any(a in ("-m", "--multirun", "-c", "--cfg") for a in args):
        return args, False
    folder = Path(folder)
    if resume in (None, "null"):
        return args, False
    global _KEPT
    _KEPT = {p: p.read_bytes() for p in (folder / ".hydra").glob("*.yaml")}  # Hydra rewrites them before the job
    path = folder / "checkpoints" / "last.pt" if resume == "auto" else Path(resume)
    path = path / "checkpoints" / "last.pt" if path.is_dir() else path
    if path.exists():
        from omegaconf import OmegaConf

        checkpoint.compatible(checkpoint.load(path), path, OmegaConf.to_container(cfg, resolve=True))
    elif resume != "auto":
        raise ConfigError(f"resume={resume}: {path} does not exist; resume=auto starts afresh where there is no checkpoint.")
    done = checkpoint.finished(folder, cfg.trainer.epochs)
    if done is not None:
        from nnlab.console import console
        from nnlab.run_files import finished_message

        console.print(finished_message(folder, done), soft_wrap=True)
        return args, True
    return args, False


def _run_to_continue(args: list[str]):
    """The run that `resume=auto` continues where it is a run alone: its hydra.run.dir, once that holds a
    run with a checkpoint (else None: a fresh start, or a sweep's jobs, which continue their own)."""
    from pathlib import Path

    if any(a in MODES["-m"] for a in args):
        return None
    given = next((a.split("=", 1)[1].strip("'\"") for a in reversed(args) if a.startswith("hydra.run.dir=")), None)
    run = Path(given) if given else None
    return run if run is not None and (run / "config.yaml").is_file() and (run / "checkpoints" / "last.pt").is_file() else None


def _claim(folder: str, key: str, fresh: bool, cfg, multirun: bool, continuing: bool):
    """The output folder taken for this process before Hydra writes into it (run_folder.claim_output);
    what it made and its lock are remembered for the clean-up."""
    global _MADE, _LOCK
    from nnlab import run_folder

    _release()  # an earlier command's in this process (nnlab doctor runs two)

    claimed, _MADE, _LOCK = run_folder.claim_output(folder, key, fresh, cfg.overwrite, multirun, continuing)
    return claimed


def _release() -> None:
    """Let go of the output folder's lock (its .lock goes with it)."""
    global _LOCK
    if _LOCK is not None:
        _LOCK.__exit__()
        _LOCK = None


_MADE = None  # the outermost folder the pre-flight created under its lock: a run that stops on a user error before training removes it
_LOCK = None  # the output folder's lock, held by this process from the pre-flight until it ends
_SWEEP = None  # the folder of this command's sweep (-m), for its closing summary
_RUNS = None  # the folder of runs alone a run named by its time is in (outputs/runs): its HParams overview
_KEPT: dict = {}  # a resumed run's .hydra files as they were: put back when the resume stops before training


def _job(work):
    """Wrap `work(cfg, run_dir, job, cpu_share)` as a Hydra job (job: its group choices and overrides): validate first; a user error is one
    paragraph and exit 2; a crash is recorded in the run directory (summary.json status "failed",
    error.txt). In a sweep neither stops the other jobs (the sweeper sees the worst objective for this
    one), unless sweep.on_failure=stop."""

    def job(cfg):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from nnlab.console import error, exit_with
        from nnlab.errors import FAILED_JOBS, ConfigError, FolderInUse, SaveError
        from nnlab.tracking import record_failure
        from nnlab.validate import validate

        hc = HydraConfig.get()
        sweep = hc.mode == RunMode.MULTIRUN
        run_dir = hc.runtime.output_dir
        goes_on = "" if not sweep else f"job {hc.job.num} failed; " + (
            "the sweep goes on" if cfg.sweep.on_failure != "stop" else "the sweep stops here (sweep.on_failure=stop)")
        try:
            validate(cfg)
            job = {"choices": dict(hc.runtime.choices), "overrides": list(hc.overrides.task), "overview": sweep or _RUNS is not None, "sweep": sweep}
            return work(cfg, run_dir, job, _cpu_share(hc))
        except ConfigError as e:
            if not sweep:
                from nnlab.run_folder import remove_made

                if _MADE is not None:  # the pre-flight made it under its lock: leave no half-made folder behind
                    remove_made(_MADE)
                for path, content in _KEPT.items():  # a resume that stopped before training changes nothing
                    path.write_bytes(content)
                exit_with(str(e))
            if not isinstance(e, FolderInUse):  # that folder is another process's: write nothing there
                record_failure(run_dir, e)
            FAILED_JOBS.append(f"{run_dir}: refused")
            error(f"{e} ({goes_on})")
        except (SaveError, OSError) as e:  # full disk, quota, read-only folder: say so, no traceback
            message = str(e) if isinstance(e, SaveError) else _write_failure(e, run_dir)
            try:
                record_failure(run_dir, e)
            except OSError:
                pass  # the disk that failed the run may fail this too; the message says it all
            error(message + ("" if not sweep else f" ({goes_on})"), title="cannot write")
            if not sweep:
                sys.exit(1)
            FAILED_JOBS.append(f"{run_dir}: could not write")
        except Exception as e:  # a crash: keep what was written, say where the traceback is
            from nnlab.console import interrupted

            if interrupted():  # Ctrl-C inside a C extension's import surfaces as an ImportError
                raise KeyboardInterrupt from None
            path = record_failure(run_dir, e)
            error(f"the run failed: {type(e).__name__}: {e}. Traceback: {path}" + (f" ({goes_on})" if sweep else ""), title="failure")
            if not sweep:
                sys.exit(1)
            FAILED_JOBS.append(f"{run_dir}: failed")
        if cfg.sweep.on_failure == "stop":
            sys.exit(1)
        from nnlab.metrics import worst_objective

        return worst_objective(cfg.early_stopping.metric)

    return job


def _write_failure(e: OSError, run_dir: str) -> str:
    where = e.filename or run_dir
    return (f"could not write {where}: {e.strerror or e}. Checkpoints already saved in {run_dir} are intact; "
            f"free some space or choose another output folder (hydra.run.dir=...), then continue with resume={run_dir}.")


def _cpu_share(hc) -> int | None:
    """Parallel launchers (joblib) run n_jobs processes at once: each job's share of the cores, so that
    they do not fight over them (setup applies it where trainer.threads is null); None for the others."""
    import os

    launcher = hc.launcher
    n_jobs = launcher.get("n_jobs") if "_target_" in launcher and "joblib" in launcher._target_ else None
    if not n_jobs:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // (cores if n_jobs < 0 else n_jobs))


def _train(cfg, run_dir, job, cpu_share) -> float | None:
    """One training run. Returns the objective a sweeper minimises or maximises."""
    from nnlab.metrics import objective
    from nnlab.train import run

    summary = run(cfg, run_dir, job=job, cpu_share=cpu_share)
    if summary["status"] not in ("ok", "interrupted") and cfg.sweep.on_failure == "stop":
        from nnlab.console import error

        error(f"{run_dir} ended {summary['status']}; the sweep stops here (sweep.on_failure=stop)")
        sys.exit(1)
    if summary["status"] == "interrupted":  # saved; now stop, the whole sweep too
        import signal

        from nnlab.console import warning

        warning(f"interrupted by {summary['signal']}: checkpoint saved; continue with resume={run_dir}")
        sys.exit(128 + signal.Signals[summary["signal"]].value)
    return objective(summary, cfg.early_stopping.metric)


def _member(cfg, run_dir, job, cpu_share):
    """A training job of a stacked sweep up to its first step: a run_files.Member, which the batched
    launcher trains with the others of its stack (train.train). A job that continues a checkpoint, or has
    finished, trains alone here, as with the basic launcher: its objective."""
    from pathlib import Path

    from nnlab.run_files import prepare

    run_dir = Path(run_dir)
    if cfg.resume is not None and ((run_dir / "checkpoints" / "last.pt").exists() or (run_dir / "summary.json").exists()):
        return _train(cfg, run_dir, job, cpu_share)
    return prepare(cfg, run_dir, job, cpu_share, quiet=True, shared=True)


train_job = _job(_train)  # `nnlab train`
member_job = _job(_member)  # a job of a stack (hydra/launcher=batched trains the members together)


@_job
def _check_job(cfg, run_dir, job, cpu_share) -> None:
    """A failed check is exit 1; in a sweep (nnlab check -m) the other configs are still checked, and the
    sweep ends with exit 1 naming the ones that failed."""
    from nnlab.check import run

    if not run(cfg, run_dir, cpu_share):
        if not job["sweep"]:
            sys.exit(1)
        from nnlab.errors import FAILED_JOBS

        FAILED_JOBS.append(f"{run_dir}: a check failed")


@_job
def _lr_find_job(cfg, run_dir, job, cpu_share) -> float | None:
    from nnlab.lr_find import run

    return run(cfg, run_dir, cpu_share, tuple(job["overrides"]))


@_job
def _batch_size_find_job(cfg, run_dir, job, cpu_share) -> int | None:
    from nnlab.batch_size_find import run

    return run(cfg, run_dir, cpu_share)
