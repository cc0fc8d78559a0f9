"""nnlab's Hydra plugins: the batched launcher (batched_launcher.py)."""
