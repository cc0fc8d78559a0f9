"""Models (mlp.py, cnn.py), activations, initializers and losses."""
