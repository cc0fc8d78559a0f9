"""nnlab's Hydra launcher, `hydra/launcher=batched` (the default of `nnlab train -m`): the jobs that can
train together train as one stacked model, the others alone. The plugin lives here because Hydra finds
launchers in the `hydra_plugins` package; the grouping is nnlab/jobs/stacking.py; what a job is, and how a
group's members are prepared, trained together and end, is nnlab/jobs/task.py (the task function Hydra hands
the launcher is a jobs.task.Task).

Where the groups train is `hydra.launcher.executor` (executors.py): `local` (this machine: `workers` groups
at a time, each in a process forked from this one, workers.py; one: this process, one group after another),
or each group as ONE task of `submitit_local`, `submitit_slurm` or `ray`, which builds and trains
its stack on the worker and writes every member's run folder there (jobs.task.run_group on either side).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.nnlab_launcher.workers import how_many, train_groups
from nnlab.jobs.stacking import group_label, safe_key, short_dirname
from nnlab.jobs.stacking import sweep_config as sweep_config_like
from nnlab.jobs.task import run_group


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.nnlab_launcher.batched_launcher.BatchedLauncher"
    max_members: int = 64  # the most jobs trained as one stack (a larger group is cut into stacks of this size)
    executor: str = "local"  # local | submitit_local | submitit_slurm | ray: where each group trains, as one task
    workers: Any = "auto"  # local: the groups trained at once, each in its own process (auto | N: workers.py)
    submitit: dict[str, Any] = field(
        default_factory=dict
    )  # submitit's parameters (timeout_min, slurm_partition, gpus_per_node, ...)
    ray: dict[str, Any] = field(default_factory=dict)  # address (ray.init), num_cpus, num_gpus, resources (each task)


ConfigStore.instance().store(group="hydra/launcher", name="batched", node=BatchedLauncherConf, provider="nnlab")


class BatchedLauncher(Launcher):
    def __init__(self, max_members: int = 64, executor: str = "local", workers="auto", submitit=None, ray=None) -> None:
        super().__init__()
        self.max_members, self.executor, self.workers = max_members, executor, workers
        self.params = {"submitit": _plain(submitit), "ray": _plain(ray)}
        self.config: DictConfig | None = None
        self.task_function = None
        self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs, bases = [], []  # bases: the jobs composed by Hydra, newest first (their overrides, their config)
        for i, overrides in enumerate(job_overrides):
            sweep_config = next(
                filter(None, (sweep_config_like(cfg, before, list(overrides)) for before, cfg in bases)), None
            )
            if sweep_config is None:
                # composed by Hydra: the first job, and any that differs from those in more than values
                sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                bases[:] = [(list(overrides), sweep_config), *bases[:7]]
            else:
                OmegaConf.copy_cache(from_config=self.config, to_config=sweep_config)
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = sweep_config.hydra.job.num = initial_job_idx + i
                job = sweep_config.hydra.job  # its folder: floats rounded (optuna's trials), never shared
                job.override_dirname = short_dirname(job.override_dirname, initial_job_idx + i)
            configs.append(sweep_config)
        task = self.task_function  # a jobs.task.Task: nnlab train's stacks, the other commands' jobs run one by one
        stacks_allowed = getattr(task, "stacks", False)
        groups: dict[Any, list[int]] = {}
        why: dict[int, str] = {}
        for i, cfg in enumerate(configs):
            key, why[i] = safe_key(cfg) if stacks_allowed else (None, "")
            groups.setdefault(key if key is not None else ("alone", i), []).append(i)
        stacks = []
        for members in groups.values():
            for start in range(0, len(members), self.max_members):
                stacks.append(members[start : start + self.max_members])
        returns: dict[int, JobReturn] = {}
        from nnlab.views.console import console, shown

        sweep_dir = self.config.hydra.sweep.dir
        local = self.executor == "local" or not stacks_allowed  # (other commands' sweeps stay here)
        workers = how_many(self.workers, configs, len(stacks)) if local and stacks_allowed else 1
        console.print(
            f"sweep {shown(sweep_dir)}: {len(configs)} job{'s' if len(configs) > 1 else ''} in {len(stacks)} "
            f"group{'s' if len(stacks) > 1 else ''}{f', {workers} at a time' if workers > 1 else ''}; "
            f"watch it: tensorboard --logdir {sweep_dir}",
            soft_wrap=True,
        )
        if not local:
            from hydra_plugins.nnlab_launcher.executors import send
            from nnlab.jobs.task import folder_of

            groups_of = [[configs[i] for i in st] for st in stacks]
            returns = send(self.executor, self.params, groups_of, self.hydra_context, sweep_dir, task.session)
            return [returns[folder_of(c)] for c in configs]
        given = [
            dict(o.split("=", 1) for o in filter_overrides(job_overrides[i]) if "=" in o) for i in range(len(configs))
        ]
        labels = [f"{n}/{len(stacks)}" for n in range(1, len(stacks) + 1)]

        def said(n: int) -> None:
            if len(stacks[n]) > 1 or why[stacks[n][0]]:  # a run alone says itself as it ends (its folder's name)
                console.print(
                    f"\\[{labels[n]}] {shown(group_label(given, stacks[n], why[stacks[n][0]]))}", soft_wrap=True
                )

        def run(n: int) -> tuple[list[JobReturn], list]:
            return run_group(task, self.hydra_context, [configs[i] for i in stacks[n]], labels[n])

        for cfg in configs:  # what ran, in each run's record; a group's share of the cores (jobs.task)
            with open_dict(cfg):
                cfg.hydra.launcher.workers = workers
        if workers == 1:
            for n, stack in enumerate(stacks):
                said(n)
                group, _ = run(n)
                returns.update(zip(stack, group))
            return [returns[i] for i in range(len(configs))]
        from hydra_plugins.nnlab_launcher.executors import member_result

        for stack, result in zip(stacks, train_groups(run, stacks, workers, said)):
            if isinstance(result, str):  # its process died: its members are lost, the others stand
                for i in stack:
                    returns[i], outcome = member_result(configs[i], None, result)
                    task.session.outcomes.append(outcome)
            else:
                group, outcomes = result
                returns.update(zip(stack, group))
                task.session.outcomes.extend(outcomes)
        return [returns[i] for i in range(len(configs))]


def _plain(value) -> dict:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else dict(value or {})
