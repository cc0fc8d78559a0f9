"""nnlab: run the classic 'training neural networks' experiments from the shell.

In Python: `nnlab.load_run(path)` gives a trained run's model, config and summary (nnlab/commands/load_run.py)."""

__version__ = "0.1.0"
__all__ = ["Run", "load_run"]


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


def __getattr__(name: str):
    if name in ("load_run", "Run"):  # imported on first use: `import nnlab` stays free of torch
        from nnlab.commands import load_run as runs

        return getattr(runs, name)
    raise AttributeError(f"module 'nnlab' has no attribute {name!r}")
