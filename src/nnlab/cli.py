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
  report           compare the runs under a folder: nnlab report PATH [--sort acc/val] [--out DIR]
  ensemble         average the predictions of the runs under a folder (e.g. seeds): nnlab ensemble PATH

examples:
  nnlab train                                  toy 2-D moons, MLP, ReLU, Adam (about 10 s on a CPU)
  nnlab train data=mnist trainer.epochs=5      MNIST
  nnlab train -m activation=relu,tanh,sigmoid  a sweep, one run directory per option
  nnlab train data=sine loss=huber             regression (MSE, MAE, R^2 in place of accuracy)
  nnlab train --help                           every config group and option
  nnlab check model.hidden=[4]                 does this config train at all?
  nnlab lr-find data=mnist optimizer=sgd       which learning rate?
  nnlab train -m experiment=activations        a lecture experiment, then: nnlab report outputs/sweeps/DATE_TIME
  tensorboard --logdir outputs                 watch the runs
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] in ("-V", "--version"):
        from nnlab import __version__

        print(f"nnlab {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        return _hydra(_train_job, "nnlab train", rest)
    if command == "check":
        return _hydra(_check_job, "nnlab check", rest, default_dir="check")
    if command == "lr-find":
        return _hydra(_lr_find_job, "nnlab lr-find", rest, default_dir="lr_find")
    if command == "batch-size-find":
        return _hydra(_batch_size_find_job, "nnlab batch-size-find", rest, default_dir="batch_size_find")
    if command == "ensemble":
        from nnlab.ensemble import main as ensemble

        return ensemble(rest)
    if command == "report":
        from nnlab.report import main as report

        return report(rest)
    print(f"nnlab: unknown command {command!r}\n", file=sys.stderr)
    print(USAGE, end="", file=sys.stderr)
    return 2


def _hydra(job, prog: str, args: list[str], default_dir: str | None = None) -> int:
    """Hand the arguments to Hydra (composition, --help, --cfg, -m, sweepers and launchers).
    Commands other than train keep their run directories apart: outputs/DEFAULT_DIR/DATE_TIME."""
    import hydra

    from nnlab.command_line import check_command_line
    from nnlab.config import register_configs
    from nnlab.errors import ConfigError
    from nnlab.console import exit_with

    register_configs()
    resume = next((a.split("=", 1)[1] for a in args if a.startswith("resume=")), None)
    if resume not in (None, "auto", "null") and not any(a.startswith("hydra.run.dir=") for a in args):
        from pathlib import Path

        path = Path(resume)  # continue in the run's own directory
        args = [*args, f"hydra.run.dir={path.parent.parent if path.suffix == '.pt' else path}"]
    if default_dir and not any(a.startswith("hydra.run.dir=") for a in args):
        args = [*args, f"hydra.run.dir=outputs/{default_dir}/${{now:%Y-%m-%d_%H-%M-%S}}"]
    try:
        check_command_line(args)  # the config of every job, and the output folder
    except ConfigError as e:
        exit_with(str(e))
    flags = [a for a in args if a in ("-m", "--multirun")]  # anywhere on the line (Hydra wants them first)
    sys.argv = [prog, *flags, *(a for a in args if a not in flags)]
    hydra.main(config_path="pkg://nnlab.conf", config_name="train", version_base="1.3")(job)()
    return 0


def _job(work):
    """Wrap `work(cfg, run_dir, choices, cpu_share)` as a Hydra job: validate first; a user error is one paragraph
    and exit 2; a crash is recorded in the run directory (summary.json status "failed", error.txt).
    In a sweep neither stops the other jobs: the sweeper sees the worst objective for this one."""

    def job(cfg):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from nnlab.console import error, exit_with
        from nnlab.errors import ConfigError, SaveError
        from nnlab.tracking import record_failure
        from nnlab.validate import validate

        hc = HydraConfig.get()
        sweep = hc.mode == RunMode.MULTIRUN
        run_dir = hc.runtime.output_dir
        try:
            validate(cfg)
            return work(cfg, run_dir, dict(hc.runtime.choices), _cpu_share(hc))
        except ConfigError as e:
            if not sweep:
                exit_with(str(e))
            record_failure(run_dir, e)
            error(f"{e} (job {hc.job.num} skipped; the sweep goes on)")
        except (SaveError, OSError) as e:  # full disk, quota, read-only folder: say so, no traceback
            message = str(e) if isinstance(e, SaveError) else _write_failure(e, run_dir)
            try:
                record_failure(run_dir, e)
            except OSError:
                pass  # the disk that failed the run may fail this too; the message says it all
            error(message + ("" if not sweep else f" (job {hc.job.num} failed; the sweep goes on)"), title="cannot write")
            if not sweep:
                sys.exit(1)
        except Exception as e:  # a crash: keep what was written, say where the traceback is
            path = record_failure(run_dir, e)
            error(f"the run failed: {type(e).__name__}: {e}. Traceback: {path}", title="failure")
            if not sweep:
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


@_job
def _train_job(cfg, run_dir, choices, cpu_share) -> float | None:
    """One training run. Returns the objective a sweeper minimises or maximises."""
    from nnlab.metrics import objective
    from nnlab.train import run

    summary = run(cfg, run_dir, choices=choices, cpu_share=cpu_share)
    if summary["status"] == "interrupted":  # saved; now stop, the whole sweep too
        import signal

        from nnlab.console import warning

        warning(f"interrupted by {summary['signal']}: checkpoint saved; continue with resume={run_dir}")
        sys.exit(128 + signal.Signals[summary["signal"]].value)
    return objective(summary, cfg.early_stopping.metric)


@_job
def _check_job(cfg, run_dir, choices, cpu_share) -> None:
    from nnlab.check import run

    if not run(cfg, run_dir, cpu_share):
        sys.exit(1)


@_job
def _lr_find_job(cfg, run_dir, choices, cpu_share) -> float | None:
    from nnlab.lr_find import run

    return run(cfg, run_dir, cpu_share)


@_job
def _batch_size_find_job(cfg, run_dir, choices, cpu_share) -> int | None:
    from nnlab.batch_size_find import run

    return run(cfg, run_dir, cpu_share)
