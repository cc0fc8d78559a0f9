"""The command line, checked before Hydra runs any job, so that a sweep with one bad value never starts:
check_command_line() composes the config of every sweep value and validate()s it, and checks the output
folder. compose() is the one way tests and scripts build a config from overrides.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf, open_dict

from nnlab.config.overrides import override_key
from nnlab.config.targets import resolve_target
from nnlab.config.text import copied
from nnlab.config.validate import validate
from nnlab.errors import ConfigError, did_you_mean, unwritable
from nnlab.jobs.stacking import launch_problem
from nnlab.run_files.folder import named_after

FLAGS_WITH_VALUE = {
    "-c",
    "--cfg",
    "-p",
    "--package",
    "-cp",
    "--config-path",
    "-cn",
    "--config-name",
    "-cd",
    "--config-dir",
    "--experimental-rerun",
    "--info",
}
_NO_CHECK = {"-h", "--help", "-hh", "--hydra-help", "--info", "--shell-completion", "-sc", "--version"}


class Checked(NamedTuple):
    """What check_command_line() found: the first job's config (without Hydra's node), the output folder
    (hydra.run.dir, or hydra.sweep.dir with -m), the sweeper's class, and for a sweep the folder-name keys
    that Hydra would leave out plus the command line's constant ones (None: not a sweep of several values)."""

    cfg: DictConfig | None = None
    folder: str | None = None
    sweeper: str | None = None
    name_without: list[str] | None = None


def check_command_line(args: list[str], config_module: str = "nnlab.conf", config_name: str = "train") -> Checked:
    """Compose the config for the overrides in `args` and validate() it, once for every value of every
    sweep; raise ConfigError with a one-paragraph message for the first problem."""
    refuse_unsafe(args)
    if any(a.split("=")[0] in _NO_CHECK for a in args):
        return Checked()
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(_config_overrides(args))
    except HydraException as e:
        raise ConfigError(f"cannot parse the command line: {_first_line(e)}") from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    swept: dict[str, list] = {}  # each swept key's values (glob() and intervals: left to the sweeper)
    for o in parsed:
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())
            except Exception:
                continue
            if not values:
                raise ConfigError(
                    f"{o.input_line} gives no values: the sweep would run nothing. Check the bounds "
                    "(range(START,STOP) stops before STOP, e.g. range(0,3) is 0,1,2)."
                )
            swept[o.get_key_element()] = values
            outside = next(
                (
                    v
                    for v in values
                    if not os.path.normpath(os.path.join("SWEEP", f"{o.key_or_group}={v}")).startswith("SWEEP/")
                ),
                None,
            )
            if outside is not None:
                # a job's folder is named by what it sets: a path climbing out would put it elsewhere
                raise ConfigError(
                    f"{o.key_or_group}={outside}: a sweep's job folder is named by its settings, and this "
                    "value's `..` would put it outside the sweep's folder. Give the path without `..` "
                    "(an absolute one)."
                )
    # every value of each swept key, beside the first value of every other one (a sweep over loss= and data=
    # is never checked with the default loss); the swept key last, so that _set_value can set it alone
    firsts = [f"{k}={v[0]}" for k, v in swept.items()]
    variants = [fixed + firsts]
    for key, values in swept.items():
        others = [f for f in firsts if not f.startswith(key + "=")]
        variants += [fixed + others + [f"{key}={v}"] for v in values]
    # Hydra's own settings, less a sweeper's search spaces (`hydra.sweeper.params.optimizer.lr=tag(log, ...)`):
    # a composition for one job refuses sweep syntax, and the sweeper reads them itself
    hydra_overrides = [a for a in args if a.startswith("hydra.") and not _is_sweep(a)]
    base = None
    for i, variant in enumerate(variants):
        cfg = _set_value(base, variant[-1], config_module) if base is not None else None
        if cfg is None:
            cfg = compose(variant + (hydra_overrides if i == 0 else []), config_module, config_name, hydra=i == 0)
        if i == 0:
            multirun = any(a in ("-m", "--multirun") for a in args)
            key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            try:
                folder = str(OmegaConf.select(cfg, key))
                if not multirun and not any(a.startswith("hydra.run.dir=") for a in args):  # a run alone, by default:
                    folder = "_".join(
                        filter(None, (folder, named_after(args)))
                    )  # named by what it sets, after the time
                sweeper = OmegaConf.select(cfg, "hydra.sweeper._target_")
                set_keys = _settings(cfg, fixed, variants)
                swept = any(o.is_sweep_override() for o in parsed) or bool(
                    set_keys or OmegaConf.select(cfg, "hydra.sweeper.params")
                )
                constant = [
                    o.key_or_group
                    for o in parsed
                    if not (o.is_sweep_override() or o.is_hydra_override() or o.key_or_group in set_keys)
                ]
                hydra_out = list(OmegaConf.select(cfg, "hydra.job.config.override_dirname.exclude_keys") or [])
                name_without = (
                    [*hydra_out, *(k for k in constant if k not in hydra_out)] if swept and constant else None
                )
            except Exception:  # an unusual hydra setup: leave the folder to Hydra
                folder = sweeper = name_without = None
            problem = launch_problem(cfg.hydra) if multirun else None
            if problem:
                raise ConfigError(problem)
            with open_dict(cfg):
                del cfg["hydra"]
            base = cfg
        validate(cfg)
    if folder and not any(a in ("-c", "--cfg") for a in args):
        _check_output_folder(folder, key)
    return Checked(base, folder, sweeper, name_without if multirun else None)


# Flags of Hydra's that load configs or code from elsewhere: never nnlab's (its configs are its own tree)
_REFUSED_FLAGS = {"-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir", "--experimental-rerun"}
# Hydra's own settings a command may change (as `hydra.KEY=VALUE`); any other (hydra.callbacks, hydra.searchpath,
# hydra.output_subdir, the logging handlers' files and classes, a `_target_`) could load code or write elsewhere
HYDRA_SETTINGS = (
    "hydra.run.dir",
    "hydra.sweep.dir",
    "hydra.sweep.subdir",
    "hydra.launcher.",
    "hydra.sweeper.",
    "hydra.job.config.override_dirname.",
    "hydra.job.chdir",
    "hydra.verbose",
    "hydra.job_logging.root.level",
    "hydra.hydra_logging.root.level",
)
HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper", "hydra/sweeper/sampler", "hydra/job_logging", "hydra/hydra_logging")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


@functools.cache  # the tree is read once: every override line of a sweep asks
def group_options(config_module: str = "nnlab.conf") -> dict[str, list[str]]:
    """nnlab's config groups and their options: the folders of conf/ and the names of their YAML files."""
    root = Path(importlib.import_module(config_module).__file__).parent
    return {
        g.name: sorted(p.stem for p in g.glob("*.yaml"))
        for g in sorted(root.iterdir())
        if g.is_dir() and not g.name.startswith("_")
    }


def refuse_unsafe(args: list[str]) -> None:
    """The command line's one rule for what may load code or reach outside nnlab's config tree: Hydra's
    flags that name other config folders or pickles are refused, as is any `hydra.*` setting but
    HYDRA_SETTINGS (no `_target_` in them), and every config group's option is a name of its group, never a
    path (`experiment=../../x`): in a sweep's values and its `hydra.sweeper.settings` and `params` too.
    ConfigError (one paragraph) for the first one found."""
    for a in args:
        flag = a.split("=", 1)[0]
        if flag in _REFUSED_FLAGS:
            raise ConfigError(
                f"{flag} is not available in nnlab: its configs are its own tree (conf/), and a config "
                "folder or a pickled rerun from elsewhere could run any code. Choose options by name "
                "(nnlab train --help lists them) and change values with KEY=VALUE."
            )
    for a in _config_overrides(args, hydra=True):
        key, _, value = a.partition("=")
        key = key.lstrip("+~")
        if "@" in key:
            raise ConfigError(
                f"{a}: a package (`@`) moves a config to another place in the tree, which nnlab's "
                "configs never need. Name the group's option alone: GROUP=OPTION."
            )
        if key.startswith("hydra"):
            _refuse_hydra(a, key, value)
        else:
            _names_only(a)


def _refuse_hydra(arg: str, key: str, value: str) -> None:
    from nnlab.config.targets import HYDRA_KEYS

    if key.startswith("hydra/"):
        if key not in HYDRA_GROUPS:
            raise ConfigError(f"{arg}: {key} is not one of Hydra's groups that nnlab uses ({', '.join(HYDRA_GROUPS)}).")
        _names_only(arg, group=key)
        return
    as_key = re.search(r"(?:^|[{,\s])(" + "|".join(HYDRA_KEYS) + r")\s*:", value)  # {_target_: ...} in a value
    if not key.startswith(HYDRA_SETTINGS) or any(k in key.split(".") for k in HYDRA_KEYS) or as_key:
        raise ConfigError(
            f"{arg}: nnlab lets a command change only these of Hydra's settings: "
            f"{', '.join(s.rstrip('.') + ('.*' if s.endswith('.') else '') for s in HYDRA_SETTINGS)} "
            "(and none of them to a `_target_`). Others (hydra.callbacks, hydra.searchpath, the logging "
            "handlers, the output subfolder) could load code or write outside the output folder."
        )
    if _is_sweep(arg):
        raise ConfigError(
            f"{arg}: Hydra cannot sweep its own settings. A search space goes on the setting itself, "
            f"e.g. 'optimizer.lr=tag(log, interval(1e-3, 3e-2))' with hparams_search=fine (optuna reads it "
            f"as the range to search)."
        )
    if key == "hydra.sweep.subdir" and (value.startswith("/") or ".." in value.replace("\\", "/").split("/")):
        raise ConfigError(
            f"{arg}: a job's folder stays inside its sweep's (hydra.sweep.dir): a relative name without `..`."
        )
    if key.startswith(("hydra.sweeper.settings", "hydra.sweeper.params")):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            parsed = OverridesParser.create().parse_override(arg.lstrip("+~"))
            inner = parsed.value()
        except Exception:
            return  # a bad value: the composition says what is wrong with it
        if key.startswith("hydra.sweeper.settings"):
            lines = [
                str(o)
                for s in (inner if isinstance(inner, list) else [inner])
                for o in (s if isinstance(s, list) else [s])
            ]
        elif isinstance(inner, dict):  # hydra.sweeper.params={experiment:'choice(a,b)'}
            lines = [f"{k}={v}" for k, v in inner.items()]
        else:  # hydra.sweeper.params.experiment=choice(a,b)
            lines = [f"{key.removeprefix('hydra.sweeper.params.')}={value}"]
        refuse_unsafe(lines)


def _names_only(arg: str, group: str | None = None) -> None:
    """`arg` (GROUP=OPTION, or a sweep over options) names options, not paths, where its key is a group."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    key = arg.partition("=")[0].lstrip("+~")
    if group is None and key not in group_options() and "/" not in key:
        return
    if group is None and "/" in key:
        raise ConfigError(
            f"{arg}: {key} is not a config group of nnlab's (groups are the folders of conf/: "
            f"{', '.join(group_options())}), and options are names, not paths."
        )
    try:
        o = OverridesParser.create().parse_override(arg)
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
    except Exception:
        values = [arg.partition("=")[2]]
    for v in values:
        if isinstance(v, str) and not (_NAME.match(v) and ".." not in v):  # (a number or a list: the composition says)
            options = group_options().get(key)
            raise ConfigError(
                f"{arg}: an option of `{key}` is a name{' (' + ', '.join(options) + ')' if options else ''}, "
                f"never a path: {v!r} would load a config from outside nnlab's tree."
            )


def _is_sweep(arg: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(arg).is_sweep_override()
    except Exception:
        return False  # a bad line: the composition says what is wrong with it


def _config_overrides(args: list[str], hydra: bool = False) -> list[str]:
    """The command line's overrides of the config: not its flags and their values, nor (unless `hydra`)
    Hydra's own settings (hydra.*)."""
    overrides, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = a in FLAGS_WITH_VALUE
        elif hydra or not a.startswith("hydra."):
            overrides.append(a)
    return overrides


def _settings(cfg: DictConfig, fixed: list[str], variants: list[list[str]]) -> set[str]:
    """hydra.sweeper.settings (grid_sweeper.py): each setting's config checked too (added to `variants`,
    a setting's overrides replacing the command line's for the same key); returns the keys they set."""
    settings = [list(s) for s in OmegaConf.select(cfg, "hydra.sweeper.settings") or []]
    for s in settings:  # as the grid sweeper builds its job: only this setting's own keys are replaced
        own = {override_key(o) for o in s}
        variants.append([*(o for o in fixed if override_key(o) not in own), *s])
    return {override_key(o) for s in settings for o in s}


def _set_value(base: DictConfig, override: str, config_module: str) -> DictConfig | None:
    """The config of one sweep value without composing it again: `base` (the fixed overrides' config)
    with `key=value` set the way Hydra applies a value override after composition. None where that is not
    the same as composing (a config group, `+`/`++`/`~`, a package) or the value does not fit: the caller
    then composes, and Hydra's own error names the problem. A seed or rate sweep checks in milliseconds
    per value instead of a composition each."""

    from hydra.core.override_parser.overrides_parser import OverridesParser

    o = OverridesParser.create().parse_override(override)
    key = o.key_or_group
    groups = Path(importlib.import_module(config_module).__file__).parent
    if (
        o.is_add()
        or o.is_force_add()
        or o.is_delete()
        or o.package is not None
        or "/" in key
        or (groups / key).is_dir()
    ):
        return None
    cfg = copied(base)
    try:
        OmegaConf.update(cfg, key, o.value(), merge=True)
    except Exception:
        return None
    return cfg


def _check_output_folder(path: str, key: str) -> None:
    """Refuse, before any work, an output folder (hydra.run.dir, or hydra.sweep.dir with -m) that cannot
    be created or written. The folder itself is not created here: Hydra does that."""

    folder = Path(path).absolute()
    problem = unwritable(folder)
    if problem:
        raise ConfigError(
            f"the output folder {folder} cannot be created: {problem}. Choose another one with {key}=PATH "
            "(or run from a writable working directory: runs go under ./outputs by default)."
        )


def compose(
    overrides: list[str] = (), config_module: str = "nnlab.conf", config_name: str = "train", hydra: bool = False
) -> DictConfig:
    """The config `nnlab train OVERRIDES` would run (with Hydra's own node where `hydra`), not yet
    validated; a composition error is a ConfigError with a one-paragraph message."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from nnlab.config.schema import register_configs

    register_configs()
    overrides = list(overrides)
    refuse_unsafe(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module, version_base="1.3"):
            try:
                return hydra_compose(config_name, overrides=overrides, return_hydra_config=hydra)
            except (HydraException, OmegaConfBaseException, ValueError) as e:  # ValueError: group=true, group=3
                raise ConfigError(_explain(e, overrides)) from None
    finally:
        GlobalHydra.instance().clear()


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# Hydra plugins that nnlab's extras install: group/option -> (the plugin, the pip requirement)
PLUGINS = {
    "hydra/sweeper/optuna": ("optuna sweeper", "nnlab[sweeps]"),
    "hydra/launcher/joblib": ("joblib launcher", "nnlab[sweeps]"),
    "hydra/launcher/submitit_local": ("submitit launcher", "nnlab[sweeps]"),
    "hydra/launcher/submitit_slurm": ("submitit launcher", "nnlab[sweeps]"),
    "hydra/launcher/ray": ("Ray launcher", "nnlab[ray]"),
}


def _explain(e: Exception, overrides: list[str]) -> str:
    """Hydra's composition errors, rewritten as one paragraph that names the key and the valid choices."""

    from hydra.core.global_hydra import GlobalHydra

    text = f"{e}\n{e.__cause__ or ''}"
    loader = GlobalHydra.instance().config_loader()
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        options = loader.get_group_options(group)
        extra = PLUGINS.get(f"{group}/{option}")
        if extra:  # a Hydra plugin that is not installed
            return (
                f"{group}={option} needs Hydra's {extra[0]} plugin, which is not installed: "
                f"pip install '{extra[1]}' (in a source checkout: pip install -e '.[{extra[1].split('[')[1]}'), then run the "
                f"command again. Installed now: {', '.join(options)}."
            )
        return f"{group}={option}: there is no such option in the `{group}` group.{did_you_mean(option, options, group + '=')} Choose one of: {', '.join(options)}."
    conversion = re.search(r"Value '([^']*)' (?:of type '\w+' )?could not be converted to (\w+)", text)
    if conversion:
        key = re.search(r"full_key: (\S+)", text) or re.search(r"override (\S+?)=", text)
        name = key.group(1) if key else "a value"
        return f"{name}={conversion.group(1)!r} is invalid: it must be of type {conversion.group(2)}."
    not_optional = re.search(r"field '([\w.]+)' is not Optional", text)
    if not_optional:
        return f"{not_optional.group(1)}=null is invalid: it needs a value (see nnlab train --cfg job for the default)."
    if re.search(r"Config group override must be a string or a list", text):  # activation=true, model=3
        for o in overrides:
            group, _, option = o.partition("=")
            options = loader.get_group_options(group) if "=" in o and not group.startswith(("+", "~")) else []
            if options and option not in options:
                return (
                    f"{group}={option}: `{group}` is a config group; choose one of its options: {', '.join(options)}."
                )
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown:
        name = unknown.group(1)
        parent, _, leaf = name.rpartition(".")
        node = _node_at(loader, parent, [o for o in overrides if not o.lstrip("+~").startswith(name)])
        known = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
        target = resolve_target(str(node.get("_target_", ""))) if isinstance(node, DictConfig) else None
        if target is not None and leaf in inspect.signature(target).parameters:
            value = next((o.split("=", 1)[1] for o in overrides if o.startswith(name + "=")), "VALUE")
            return (
                f"{name} is not set in the chosen `{parent}` config, but {node._target_} accepts it: "
                f"add it with +{name}={value}."
            )
        where = f"`{parent}`" if parent else "the config"
        return (
            f"{name} is not a setting of {where}.{did_you_mean(leaf, known, parent + '.' if parent else '')} "
            f"Its settings are: {', '.join(k for k in known if k != 'hydra')}."
        )
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _node_at(loader, parent: str, overrides: list[str]):
    """The config node at `parent` (dotted) composed with `overrides`, for 'did you mean' hints."""
    try:
        from hydra.types import RunMode

        cfg = loader.load_configuration("train", overrides=overrides, run_mode=RunMode.RUN)
        return OmegaConf.select(cfg, parent) if parent else cfg
    except Exception:
        return None


def grid_sweeper(args: list[str], sweeper: str | None) -> list[str]:
    """nnlab's grid sweeper (grid_sweeper.py) where no sweeper is chosen: for a list of settings
    (`hydra.sweeper.settings`, before the check: `sweeper` None), and for a grid once the check found Hydra's
    basic sweeper (the same grid, less a second composition of every job)."""
    if any(a.startswith("hydra/sweeper=") for a in args):
        return args
    if sweeper is None:
        return ["hydra/sweeper=grid", *args] if any(a.startswith("hydra.sweeper.settings=") for a in args) else args
    from nnlab.jobs.hydra_private import BASIC_SWEEPER

    return [*args, "hydra/sweeper=grid"] if sweeper == BASIC_SWEEPER else args


PATH_KEYS = ("resume", "hydra.run.dir", "hydra.sweep.dir", "transfer.init_from", "prune.source", "data.source.root")


def quoted_path(arg: str) -> str:
    """`resume=outputs/s/init=zeros,trainer.seed=0` as Hydra's override grammar reads a path: quoted, where
    a folder's name holds `=` (a sweep's runs, a run alone named by its settings: no value of Hydra's
    grammar holds one) and it is not yet; `root=/a,/b` stays a sweep over two paths."""
    key, sep, value = arg.partition("=")
    if override_key(key) not in PATH_KEYS or not sep or value[:1] in ("'", '"') or "'" in value:
        return arg
    return f"{key}='{value}'" if "=" in value else arg


def quiet_optuna(sweeper: str | None) -> None:
    """Optuna's own INFO lines ('A new study created in memory ...', in colour) and its storage's
    ('setup plugin alembic...') repeat what Hydra's sweeper says: warnings only, where a sweep uses it."""
    if not sweeper or "optuna" not in sweeper:
        return

    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass
