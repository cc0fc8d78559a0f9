"""Override lines (`optimizer.lr=0.1`, `+trainer.foo=1`, `~init.bias`) as nnlab reads them, beside Hydra's
grammar (which parses them): the key a line sets."""


def override_key(override: str) -> str:
    """The key an override sets: `optimizer.lr` for `optimizer.lr=0.1`, `+trainer.foo=1`, `~init.bias`."""
    return override.split("=", 1)[0].lstrip("+~")
