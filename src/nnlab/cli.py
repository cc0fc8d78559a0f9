"""`nnlab` and its subcommands. Imports are deferred so that `nnlab --help` is instant."""

from __future__ import annotations

import sys

USAGE = """usage: nnlab [--version] [--help] COMMAND [ARGS...]

Run the classic 'training neural networks' experiments from Hydra configs.

commands:
  train     train a network: nnlab train [GROUP=OPTION ...] [KEY=VALUE ...] [-m] [--cfg job] [--help]
  check     the babysitting checks on a config: initial loss, regularization, overfit a tiny subset,
            gradient flow (exit code 1 when one fails)
  lr-find   learning-rate range test: loss against an exponentially growing rate, a suggested rate

examples:
  nnlab train                                  toy 2-D moons, MLP, ReLU, Adam (about 10 s on a CPU)
  nnlab train data=mnist trainer.epochs=5      MNIST
  nnlab train -m activation=relu,tanh,sigmoid  a sweep, one run directory per option
  nnlab train --help                           every config group and option
  nnlab check model.hidden=[4]                 does this config train at all?
  nnlab lr-find data=mnist optimizer=sgd       which learning rate?
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
    print(f"nnlab: unknown command {command!r}\n", file=sys.stderr)
    print(USAGE, end="", file=sys.stderr)
    return 2


def _hydra(job, prog: str, args: list[str], default_dir: str | None = None) -> int:
    """Hand the arguments to Hydra (composition, --help, --cfg, -m, sweepers and launchers).
    Commands other than train keep their run directories apart: outputs/DEFAULT_DIR/DATE_TIME."""
    import hydra

    from nnlab.config import ConfigError, check_command_line, register_configs
    from nnlab.console import exit_with

    register_configs()
    try:
        check_command_line(args)
    except ConfigError as e:
        exit_with(str(e))
    if default_dir and not any(a.startswith("hydra.run.dir=") for a in args):
        args = [*args, f"hydra.run.dir=outputs/{default_dir}/${{now:%Y-%m-%d_%H-%M-%S}}"]
    sys.argv = [prog, *args]
    hydra.main(config_path="pkg://nnlab.conf", config_name="train", version_base="1.3")(job)()
    return 0


def _job(work):
    """Validate, then run `work(cfg, run_dir, choices)`; user errors become one paragraph and exit 2."""

    def job(cfg):
        from hydra.core.hydra_config import HydraConfig

        from nnlab.config import ConfigError, validate
        from nnlab.console import exit_with

        try:
            validate(cfg)
            hc = HydraConfig.get()
            return work(cfg, hc.runtime.output_dir, dict(hc.runtime.choices))
        except ConfigError as e:
            exit_with(str(e))

    return job


@_job
def _train_job(cfg, run_dir, choices) -> float | None:
    """One training run. Returns the objective a sweeper minimises or maximises."""
    from nnlab.train import run

    return run(cfg, run_dir, choices=choices)["metrics"].get(cfg.early_stopping.metric)


@_job
def _check_job(cfg, run_dir, choices) -> None:
    from nnlab.check import run

    if not run(cfg, run_dir):
        sys.exit(1)


@_job
def _lr_find_job(cfg, run_dir, choices) -> float | None:
    from nnlab.lr_find import run

    return run(cfg, run_dir)
