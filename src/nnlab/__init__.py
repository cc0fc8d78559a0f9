"""nnlab: run the classic 'training neural networks' experiments from the shell."""

__version__ = "0.1.0"
