"""`nnlab` and its subcommands. Imports are deferred so that `nnlab --help` is instant."""

from __future__ import annotations

import sys

USAGE = """usage: nnlab [--version] [--help] COMMAND [ARGS...]

Run the classic 'training neural networks' experiments from Hydra configs.

commands:
  train     train a network: nnlab train [GROUP=OPTION ...] [KEY=VALUE ...] [-m] [--cfg job] [--help]

examples:
  nnlab train                                  toy 2-D moons, MLP, ReLU, Adam (about 10 s on a CPU)
  nnlab train data=mnist trainer.epochs=5      MNIST
  nnlab train -m activation=relu,tanh,sigmoid  a sweep, one run directory per option
  nnlab train --help                           every config group and option
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
    print(f"nnlab: unknown command {command!r}\n", file=sys.stderr)
    print(USAGE, end="", file=sys.stderr)
    return 2


def _hydra(job, prog: str, args: list[str]) -> int:
    """Hand the arguments to Hydra (composition, --help, --cfg, -m, sweepers and launchers)."""
    import hydra

    from nnlab.config import ConfigError, check_command_line, register_configs
    from nnlab.console import exit_with

    register_configs()
    try:
        check_command_line(args)
    except ConfigError as e:
        exit_with(str(e))
    sys.argv = [prog, *args]
    hydra.main(config_path="pkg://nnlab.conf", config_name="train", version_base="1.3")(job)()
    return 0


def _train_job(cfg) -> float | None:
    """One training run (a Hydra job). Returns the objective a sweeper minimises or maximises."""
    from hydra.core.hydra_config import HydraConfig

    from nnlab.config import ConfigError, validate
    from nnlab.console import exit_with

    try:
        validate(cfg)
        from nnlab.train import run

        hc = HydraConfig.get()
        summary = run(cfg, hc.runtime.output_dir, choices=dict(hc.runtime.choices))
    except ConfigError as e:
        exit_with(str(e))
        return None
    return summary["metrics"].get(cfg.early_stopping.metric)
