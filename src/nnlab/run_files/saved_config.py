"""A run folder read as input: the one trust boundary for what `resume=RUN`, `resume=auto` and
`nnlab doctor RUN` take from a run.

A run folder is data. Its config comes from its composed config (RUN/config.yaml), typed by the schema
and validate()d like a command line (validate.load_run_config), and its config groups' choices from its
checkpoint (written by nnlab, loaded weights-only), each a name of nnlab's own config tree. From those two
the overrides that rebuild the run are *rendered* here (`optimizer=sgd`, `optimizer.lr=0.05`, `+activation.alpha=0.5`):
keys that are dotted identifiers, values quoted by nnlab. No text of a file is ever parsed by Hydra's
command-line grammar, so a file cannot add a flag, a `hydra.*` key, a search path or a group path. `.hydra/`
stays Hydra's provenance and is never read back.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from nnlab.errors import ConfigError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def run_overrides(run: str | Path) -> list[str]:
    """The overrides that compose exactly the config RUN was trained with: its group choices, then every
    value that differs from what those choices compose to. ConfigError (one paragraph) for a folder whose
    config or checkpoint is not nnlab's, does not validate, or holds a value no override can say."""
    from omegaconf import OmegaConf, open_dict

    from nnlab.cli.command_line import compose
    from nnlab.config.validate import load_run_config

    run = Path(run)
    saved = OmegaConf.to_container(load_run_config(run), resolve=True)
    choices = _choices(run)
    # the choices that differ from what the run's experiment (or search) picks by itself: a run names what it changed
    ground = [f"{g}={choices[g]}" for g in ("experiment", "hparams_search") if choices.get(g) is not None]
    implied = compose(ground, hydra=True).hydra.runtime.choices
    picked = [
        *ground,
        *(
            f"{g}={n}"
            for g, n in reversed(choices.items())
            if f"{g}={n}" not in ground and n is not None and implied.get(g) != n
        ),
    ]
    default = compose(picked)
    with open_dict(default):
        default.pop("hydra", None)
    default = OmegaConf.to_container(default, resolve=True)
    values = []
    mine, theirs = _leaves(saved), _leaves(default)
    for key, value in mine.items():
        if key not in theirs:
            values.append(f"+{key}={render(value, key, run)}")
        elif theirs[key] != value or type(theirs[key]) is not type(value):
            values.append(f"{key}={render(value, key, run)}")
    values += [f"~{key}" for key in theirs if key not in mine and not any(k.startswith(key + ".") for k in mine)]
    return [*picked, *values]


def _choices(run: Path) -> dict[str, Any]:
    """The run's config group choices (its checkpoint's record), each a name of nnlab's config tree."""
    from nnlab.cli.command_line import group_options
    from nnlab.run_files import checkpoint

    path = next((p for p in (run / "checkpoints" / "last.pt", run / "checkpoints" / "best.pt") if p.is_file()), None)
    if path is None:
        raise ConfigError(
            f"{run} has no checkpoint (checkpoints/last.pt or best.pt): nnlab cannot tell which options "
            "it was trained with. Give a run folder that nnlab wrote, or type its overrides out."
        )
    config = checkpoint.load(path).get("config")
    recorded = config.get("choices") if isinstance(config, dict) else None
    if not isinstance(recorded, dict):
        raise ConfigError(
            f"{path} cannot be resumed: it does not record the config and options it was saved with "
            "(made by another tool, or damaged). Start a new run, or give another one."
        )
    groups = group_options()
    choices = {}
    for group, name in recorded.items():
        if not isinstance(group, str) or group.startswith("hydra/"):
            continue  # Hydra's own (launcher, sweeper, logging): the command's, not the run's
        if group not in groups or not (name is None or name in groups[group]):
            raise ConfigError(
                f"{path} records {group}={name!r}, which is not an option of nnlab's config tree "
                f"(options are names, never paths): a damaged or crafted run folder. Give another run."
            )
        choices[group] = name
    return choices


def _leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}; lists stay lists (a value of their own)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_leaves(value, name + "."))
        else:
            out[name] = value
    return out


def render(value: Any, key: str = "", run: Path | str = "") -> str:
    """`value` as an override's value that Hydra's grammar reads back as exactly that value: numbers and
    booleans bare, strings always quoted, lists and mappings of those. A key that is not a dotted
    identifier, or a string with a backslash or an interpolation (`${`), is refused (ConfigError)."""
    if key and not all(_IDENTIFIER.match(part) for part in key.split(".")):
        raise ConfigError(f"{run}: the setting {key!r} is not a name nnlab writes (a damaged or crafted run folder).")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str):
        if "\\" in value or "${" in value or any(ord(c) < 32 for c in value):
            raise ConfigError(
                f"{run}: {key}={value!r} holds a backslash, an interpolation or a control character, "
                "which nnlab never writes (a damaged or crafted run folder)."
            )
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(render(v, "", run) for v in value) + "]"
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str) or not _IDENTIFIER.match(k):
                raise ConfigError(
                    f"{run}: the setting {key}.{k} is not a name nnlab writes (a damaged or crafted run folder)."
                )
        return "{" + ",".join(f"{k}:{render(v, '', run)}" for k, v in value.items()) + "}"
    raise ConfigError(f"{run}: {key} holds a {type(value).__name__}, which no config of nnlab holds.")
