"""What a config's `_target_`s may name, checked without building anything: each group's target against
its allowlist (ALLOWED: the modules it must be defined in, the class it must be), its keys against the
target's signature (number types, `Literal` choices), and Hydra's instantiation keys nowhere but at the top
of those groups. validate() calls these for every config, typed or read from a run folder."""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nnlab.errors import ConfigError, did_you_mean

TARGET_PREFIXES = ("nnlab.", "torch.nn.", "torch.optim.")
TARGET_GROUPS = ("model", "activation", "init", "optimizer", "schedule", "loss")
# What each `_target_` may name: (module prefixes the object must be defined under, the class it must be,
# if a class). Nothing else is ever instantiated, and no `_target_` below these nodes at all.
ALLOWED = {
    "model": (("nnlab.nn.",), "torch.nn.Module"),
    "activation": (
        ("nnlab.nn.activations", "torch.nn.modules.activation", "torch.nn.modules.linear"),
        "torch.nn.Module",
    ),
    "init": (("nnlab.nn.init",), None),
    "optimizer": (("torch.optim.", "nnlab.engine.optimizers"), "torch.optim.Optimizer"),
    "schedule": (("nnlab.engine.schedules",), None),
    "loss": (("nnlab.nn.losses",), "torch.nn.Module"),
    "data.source": (("nnlab.data.",), None),
}
# Targets that moved between nnlab releases: a run folder saved before names the old place, read as the new one
# (validate.load_run_config, checkpoint.compatible).
_SCHEDULES = (
    "constant",
    "step",
    "multistep",
    "exponential",
    "cosine",
    "warmup_cosine",
    "onecycle",
    "cyclic",
    "plateau",
)
MOVED = {
    "nnlab.optim.Yogi": "nnlab.engine.optimizers.Yogi",
    **{f"nnlab.optim.{s}": f"nnlab.engine.schedules.{s}" for s in _SCHEDULES},
}


def moved(config) -> None:
    """A saved config's (a dict or a DictConfig) optimizer and schedule targets where they are now."""
    for group in ("optimizer", "schedule"):
        node = config.get(group) if hasattr(config, "get") else None
        if hasattr(node, "get") and isinstance(node.get("_target_"), str) and node["_target_"] in MOVED:
            node["_target_"] = MOVED[node["_target_"]]


HYDRA_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
PARTIAL = ("activation", "init", "optimizer", "schedule")  # built later with their arguments: `_partial_: true`, always


def check_no_nested_targets(cfg: DictConfig) -> None:
    """Hydra's instantiation keys only where nnlab puts them (`optimizer._target_`, `optimizer._partial_`,
    ...): a `_target_` or `_args_` anywhere else (under `optimizer.foreach`, inside a list) would make
    instantiate() call whatever it names, so a config that holds one, typed or read from a file, is refused."""
    allowed = {f"{g}.{k}" for g in ALLOWED for k in ("_target_", "_partial_")}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                name = f"{path}.{key}" if path else str(key)
                if str(key) in HYDRA_KEYS and name not in allowed:
                    raise ConfigError(
                        f"{name} is not allowed: nnlab instantiates only the `_target_` of its groups "
                        f"({', '.join(ALLOWED)}), never one nested below them or elsewhere, so that no "
                        "config (typed, or read from a run folder) can make it call other code."
                    )
                walk(value, name)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(OmegaConf.to_container(cfg, resolve=False), "")


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"{key}={value!r} is invalid: {why}.")


def resolve_target(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def check_target(group: str, node: Any) -> None:
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"`{group}` must be a config node with a `_target_`; got {node!r}.")
    target = node._target_
    modules, base = ALLOWED[group]
    partial = node.get("_partial_", False)
    if partial is not (group in PARTIAL) or any(k in node for k in ("_recursive_", "_convert_", "_args_")):
        _fail(
            f"{group}._partial_",
            partial,
            f"nnlab builds the {group} {'later, with its arguments: it must be true' if group in PARTIAL else 'at once: it takes no _partial_'} "
            "(and no _recursive_, _convert_ or _args_)",
        )
    if not isinstance(target, str) or not target.startswith(TARGET_PREFIXES):
        _fail(f"{group}._target_", target, f"targets must start with one of {', '.join(TARGET_PREFIXES)}")
    obj = resolve_target(target)
    if obj is None:
        _fail(f"{group}._target_", target, "no such class or function")
    if not _allowed(obj, modules, base):
        _fail(
            f"{group}._target_",
            target,
            f"a {group} must be a {'class' if base else 'function'} defined in "
            f"{' or '.join(m.rstrip('.') for m in modules)}" + (f" (a subclass of {base})" if base else ""),
        )
    params = inspect.signature(obj).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    choices = _literal_choices(obj)
    for key in node:
        if str(key).startswith("_") and str(key).endswith("_"):
            continue
        if key not in params:
            valid = [n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL]
            raise ConfigError(
                f"{group}.{key} is not a setting of {target}.{did_you_mean(str(key), valid, group + '.')} "
                f"Its settings are: {', '.join(valid)}."
            )
        default = params[key].default
        value = node[key]
        listed = "Sequence" in str(params[key].annotation) and OmegaConf.is_list(value)  # MLP's dropout per layer
        if isinstance(default, (int, float)) and not isinstance(default, bool) and not listed:
            optional = any(word in str(params[key].annotation) for word in ("Optional", "None"))
            if value is None and not optional:
                _fail(f"{group}.{key}", value, "it must be a number (null is not allowed here)")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                _fail(f"{group}.{key}", value, "it must be a number")
        if isinstance(default, bool) and not isinstance(value, bool):
            _fail(f"{group}.{key}", value, "it must be true or false")
        if key in choices and value not in choices[key]:
            _fail(f"{group}.{key}", value, f"choose one of {', '.join(choices[key])}")


def _allowed(obj: Any, modules: tuple[str, ...], base: str | None) -> bool:
    """Is `obj` a class (a subclass of `base`) or, where base is None, a function, defined (not merely
    imported) in one of `modules`?"""
    where = getattr(obj, "__module__", None) or ""
    if not where.startswith(modules):
        return False
    if base is None:
        return inspect.isfunction(obj)
    module, _, name = base.rpartition(".")
    return inspect.isclass(obj) and issubclass(obj, getattr(importlib.import_module(module), name))


def _literal_choices(obj) -> dict[str, tuple]:
    """{parameter: its choices} for the parameters of a class or function annotated Literal[...]: the
    choices are declared once, in the signature (e.g. MLP's dropout_kind), and checked here."""
    try:
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except Exception:  # a signature whose annotations do not resolve here (a torch class): no choices to check
        return {}
    return {k: typing.get_args(h) for k, h in hints.items() if typing.get_origin(h) is typing.Literal}
