"""nnlab's Hydra plugins: the batched launcher (batched_launcher.py) and the grid sweeper (grid_sweeper.py)."""
