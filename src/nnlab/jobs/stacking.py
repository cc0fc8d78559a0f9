"""Grouping a sweep's jobs for `hydra/launcher=batched`, nnlab's own Hydra launcher (the default of
`nnlab train -m`; the plugin is hydra_plugins/nnlab_launcher/batched_launcher.py). Torch-free.

It takes the jobs any sweeper gives it, groups those that can train together, and hands each group to
the training loop (train.train) as one stack: the members' weights live side by side in [K, ...] tensors,
one batched matrix product runs every member's forward and one backward pass every member's gradients,
one stacked optimizer step updates them all. Everything else stays each member's own: its Experiment
(built by setup() from its own config: data draw, split, initialization, optimizer and schedule with its
own settings), its generators (shuffling, noise, dropout), diagnostics, alarms, early stopping,
checkpoints and run folder: a member is a run made alone, trained faster. The other jobs run one after
another in this process, as with the basic launcher.

What may differ inside a group: see GROUPABLE. A group is MLPs (batch norm, any activation: PReLU's
slopes and maxout's pieces too, dropout, activity L1), fp32, no torch.compile, pretraining, transfer or
augmentation, starting fresh (a job that resumes a checkpoint runs alone).
"""

from __future__ import annotations

import importlib.util

from omegaconf import DictConfig, OmegaConf, open_dict

# Keys whose values may differ between the members of one group (prefixes of dotted keys): each member
# builds its own objects from them. Every other key must be equal for jobs to train as one stack.
GROUPABLE = (
    "trainer.seed",
    "trainer.log_every",
    "trainer.eval_every",
    "trainer.boundary_every",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "trainer.progress",
    "data.source.seed",
    "optimizer.",
    "schedule.",
    "init.",
    "loss.label_smoothing",
    "loss.delta",
    "model.dropout",
    "model.input_dropout",
    "regularization.l1",
    "regularization.activity_l1",
    "regularization.input_noise",
    "regularization.hidden_noise",
    "regularization.clip_grad_norm",
    "regularization.clip_grad_value",
    "regularization.max_norm",
    "early_stopping.",
    "diagnostics.",
    "alarms.",
    "sweep.",
    "check.",
    "lr_find.",
    "batch_size_find.",
    "resume",
    "overwrite",
)


EXECUTORS = {
    "local": None,
    "submitit_local": ("submitit", "nnlab[sweeps]"),
    "submitit_slurm": ("submitit", "nnlab[sweeps]"),
    "ray": ("ray", "nnlab[ray]"),
}  # hydra.launcher.executor: where a group trains (the package it needs)


def launch_problem(hydra: DictConfig) -> str | None:
    """What is wrong with a sweep's launcher or sweeper settings (None: nothing): counts that must be
    whole and positive (the batched launcher's max_members and workers, joblib's and optuna's n_jobs,
    optuna's n_trials), and the batched launcher's executor."""
    launcher, sweeper = hydra.get("launcher") or {}, hydra.get("sweeper") or {}
    counts = [
        ("hydra.launcher.max_members", launcher.get("max_members"), False),
        ("hydra.launcher.n_jobs", launcher.get("n_jobs"), True),
        ("hydra.sweeper.n_trials", sweeper.get("n_trials"), False),
        ("hydra.sweeper.n_jobs", sweeper.get("n_jobs"), True),
    ]
    if launcher.get("workers") not in (None, "auto"):
        counts.append(("hydra.launcher.workers", launcher.get("workers"), False))
    for key, value, all_cores in counts:
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or (all_cores and value == -1))
        ):
            return (
                f"{key}={value!r} is invalid: it must be a whole number of 1 or more"
                f"{' (or -1: one per core)' if all_cores else ''}{' (or auto)' if key.endswith('workers') else ''}."
            )
    if not str(launcher.get("_target_", "")).endswith("BatchedLauncher") or "executor" not in launcher:
        return None
    executor = launcher.executor
    if executor not in EXECUTORS:
        return (
            f"hydra.launcher.executor={executor} is not one of {', '.join(EXECUTORS)}: where each group of a sweep "
            "trains (local: this machine, hydra.launcher.workers groups at a time; the others send each group as one "
            "task)."
        )

    need = EXECUTORS[executor]
    if need and importlib.util.find_spec(need[0]) is None:
        return (
            f"hydra.launcher.executor={executor} needs the {need[0]} package, which is not installed: "
            f"pip install '{need[1]}', then run the command again."
        )
    return None


def group_key(cfg: DictConfig) -> tuple[str | None, str]:
    """What must be equal for jobs to train as one stack, or (None, why this job trains alone)."""
    from nnlab.config.schema import flatten

    c = cfg
    why = (
        "a conv net (on a CPU a stack of 8 classic CNNs steps 1.9x slower than the 8 one after another, as "
        "vmapped or grouped convolutions: scripts/bench.py --only cnnstack)"
        if not str(c.model._target_).endswith(".MLP")
        else "torch.compile"
        if c.trainer.compile
        else f"precision {c.trainer.precision}"
        if c.trainer.precision != "fp32"
        else "pretraining"
        if c.pretrain.method != "none"
        else "transfer learning"
        if c.transfer.init_from and c.transfer.mode != "none"
        else "pruning"
        if c.prune.source is not None
        else "model.residual (its skips are not stacked yet: a stack's evaluation differs from the runs alone)"
        if c.model.get("residual")
        else "augmentation"
        if c.data.augment
        else "sweep.on_failure=stop: jobs in order, the first failure ends the sweep"
        if c.sweep.on_failure == "stop"
        else None
    )
    if why:
        return None, why
    flat = flatten(
        {
            k: OmegaConf.to_container(c[k], resolve=True) if isinstance(c[k], DictConfig) else c[k]
            for k in c
            if k != "hydra"
        }
    )
    fixed = {k: v for k, v in flat.items() if not k.startswith(GROUPABLE)}
    return repr(sorted(fixed.items())), ""


def sweep_config(base: DictConfig | None, base_overrides: list[str], overrides: list[str]) -> DictConfig | None:
    """A job's config from the first job's (`base`, composed by Hydra from `base_overrides`) where the two
    differ only in plain values (trainer.seed=3, optimizer.lr=0.1): those set on a copy, as Hydra sets a
    value override after composing, and Hydra's own record of the job (its overrides, its folder name)
    written as Hydra writes it. None where that is not the same as composing (a config group, +/~, a
    package): the caller composes. Composing costs ~0.15 s a job; this, ~3 ms."""

    from hydra.core.override_parser.overrides_parser import OverridesParser

    from nnlab.config.text import copied
    from nnlab.jobs.hydra_private import get_overrides_dirname

    if base is None or len(base_overrides) != len(overrides):
        return None
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    groups = set(base.hydra.runtime.choices.keys())
    for o, before in zip(parsed, base_overrides):
        if o.input_line == before:
            continue
        key = o.key_or_group
        if (
            o.is_add()
            or o.is_force_add()
            or o.is_delete()
            or o.package is not None
            or key in groups
            or o.is_hydra_override()
        ):
            return None
        if before.split("=", 1)[0] != o.input_line.split("=", 1)[0]:
            return None
    cfg = copied(base)
    try:
        for o, before in zip(parsed, base_overrides):
            if o.input_line != before:
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
    except Exception:
        return None
    app = [o for o in parsed if not o.is_hydra_override()]
    with open_dict(cfg.hydra):
        cfg.hydra.overrides.task = [o.input_line for o in app]
        c = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=app, kv_sep=c.kv_sep, item_sep=c.item_sep, exclude_keys=c.exclude_keys
        )
    return cfg


def short_dirname(name: str, num: int) -> str:
    """A job's folder name (Hydra's override_dirname, `optimizer.lr=0.005547119471592123,...`, as optuna's
    trials have them) with every float rounded to 4 significant digits (`optimizer.lr=0.005547`); where
    that rounded anything, the job's number is added (`...,job=3`): no two jobs of a sweep share a folder."""
    from nnlab.commands.report import round_floats

    out = round_floats(name)
    return name if out == name else f"{out},job={num}"


def safe_key(cfg: DictConfig) -> tuple[str | None, str]:
    try:
        return group_key(cfg)
    except Exception:  # a config that does not even compose into one: the job reports it, alone
        return None, "its config does not build"


def group_label(given: list[dict[str, str]], group: list[int], why: str = "") -> str:
    """A group of a sweep's jobs as its header names it (`given`: every job's command-line overrides): what
    they share of what the sweep varies, then what varies inside the group: `activation=relu: 8 runs as one
    stack (init=he_normal,zeros × trainer.seed=0..3)`, `activation=relu: 5 seeds as one stack`; a job alone
    by its settings (and why it trains alone, where that is not just that no other job shares them)."""
    from nnlab.commands.report import round_floats

    keys = list(dict.fromkeys(k for g in given for k in g))
    swept = [k for k in keys if len({g.get(k) for g in given}) > 1] if len(given) > 1 else keys
    jobs = [given[i] for i in group]
    inside = [k for k in swept if len({j.get(k) for j in jobs}) > 1]
    shared = " ".join(f"{k}={jobs[0].get(k, '(default)')}" for k in swept if k not in inside)
    shared = round_floats(shared)
    if len(group) == 1:
        return (shared or "(defaults)") + (f" (alone: {why})" if why else "")
    head = f"{shared}: " if shared else ""
    if set(inside) <= {"trainer.seed", "data.source.seed"} and len(inside) == 1:
        return f"{head}{len(group)} seeds as one stack"
    return f"{head}{len(group)} runs as one stack ({round_floats(_values(jobs, inside))})"


def _values(jobs: list[dict[str, str]], keys: list[str]) -> str:
    """`init=he_normal,zeros × trainer.seed=0..3`: each key's values, a run of whole numbers as a range."""
    shown = []
    for k in keys:
        values = list(dict.fromkeys(j.get(k, "(default)") for j in jobs))
        ints = all(v.lstrip("-").isdigit() for v in values)
        if (
            ints
            and len(values) > 2
            and [int(v) for v in values] == list(range(int(values[0]), int(values[0]) + len(values)))
        ):
            shown.append(f"{k}={values[0]}..{values[-1]}")
        else:
            shown.append(f"{k}={','.join(values)}")
    return " × ".join(shown)
