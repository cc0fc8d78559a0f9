"""Models (mlp.py, cnn.py), activations, initializers and losses."""

from contextlib import contextmanager


@contextmanager
def eval_mode(model):
    """Run the block with `model` in eval mode (dropout off, batch norm on its running statistics), then
    put it back in the mode it was in, also when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def bare(model):
    """The module itself where torch.compile wrapped it."""
    return getattr(model, "_orig_mod", model)
