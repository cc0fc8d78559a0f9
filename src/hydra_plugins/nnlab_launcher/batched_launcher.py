"""nnlab's Hydra launcher, `hydra/launcher=batched` (the default of `nnlab train -m`): the jobs that can
train together train as one stacked model in this process, the others one after another. The plugin
lives here because Hydra finds launchers in the `hydra_plugins` package; the grouping is nnlab/launcher.py,
the training nnlab's one loop (train.train), reached through the CLI's public jobs (cli.member_job).
"""


from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict

from nnlab.launcher import after_stack, differ, safe_key, short_dirname
from nnlab.launcher import sweep_config as sweep_config_like


@dataclass
class BatchedLauncherConf:
    _target_: str = "hydra_plugins.nnlab_launcher.batched_launcher.BatchedLauncher"
    max_members: int = 64  # the most jobs trained as one stack (a larger group is cut into stacks of this size)


ConfigStore.instance().store(group="hydra/launcher", name="batched", node=BatchedLauncherConf, provider="nnlab")


class BatchedLauncher(Launcher):
    def __init__(self, max_members: int = 64) -> None:
        super().__init__()
        self.max_members = max_members
        self.config: Optional[DictConfig] = None
        self.task_function = None
        self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs, base = [], None
        for i, overrides in enumerate(job_overrides):
            sweep_config = sweep_config_like(base, list(job_overrides[0]), list(overrides)) if i else None
            if sweep_config is None:  # composed by Hydra: the first job, and any that differs in more than values
                sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                base = sweep_config if i == 0 else base
            else:
                OmegaConf.copy_cache(from_config=self.config, to_config=sweep_config)
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = sweep_config.hydra.job.num = initial_job_idx + i
                job = sweep_config.hydra.job  # its folder: floats rounded (optuna's trials), never shared
                job.override_dirname = short_dirname(job.override_dirname, initial_job_idx + i)
            configs.append(sweep_config)
        from nnlab.cli import member_job, train_job

        prepare = member_job if self.task_function is train_job else None  # only training jobs stack
        groups: dict[Any, list[int]] = {}
        why: dict[int, str] = {}
        for i, cfg in enumerate(configs):
            key, why[i] = safe_key(cfg) if prepare is not None else (None, "")
            groups.setdefault(key if key is not None else ("alone", i), []).append(i)
        stacks = []
        for key, members in groups.items():
            for start in range(0, len(members), self.max_members):
                stacks.append(members[start : start + self.max_members])
        returns: dict[int, JobReturn] = {}
        from nnlab.console import console, shown
        from nnlab.report import round_floats

        sweep_dir = self.config.hydra.sweep.dir
        console.print(f"sweep {shown(sweep_dir)}: {len(configs)} job{'s' if len(configs) > 1 else ''} in {len(stacks)} "
                      f"group{'s' if len(stacks) > 1 else ''}; watch it: tensorboard --logdir {sweep_dir}", soft_wrap=True)  # fmt: skip
        done = 0
        for n, stack in enumerate(stacks, 1):
            names = [" ".join(filter_overrides(job_overrides[i])) or "(defaults)" for i in stack]
            where = f"  (runs {done + 1}-{done + len(stack)} of {len(configs)})" if len(stacks) > 1 else ""
            done += len(stack)
            if len(stack) == 1:
                reason = why[stack[0]] or "no other job shares its settings"
                console.print(f"\\[{n}/{len(stacks)}] alone ({reason}): {shown(names[0])}", soft_wrap=True)
                returns[stack[0]] = self._run(configs[stack[0]], self.task_function)
                continue
            console.print(f"\\[{n}/{len(stacks)}] {len(stack)} runs as one stack: {shown(round_floats(differ(names)))}{where}",
                          soft_wrap=True)  # fmt: skip
            returns.update(self._stack(configs, stack, prepare, f"{n}/{len(stacks)}"))
        return [returns[i] for i in range(len(configs))]

    def _run(self, cfg: DictConfig, task) -> JobReturn:
        folder = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        if folder.is_symlink():  # Hydra would write the job's .hydra/ through it: refused, the sweep goes on
            from nnlab.console import error
            from nnlab.errors import FAILED_JOBS
            from nnlab.metrics import worst_objective
            from nnlab.run_folder import link_message

            error(f"{link_message(folder)} (job {cfg.hydra.job.num} refused; the sweep goes on)")
            FAILED_JOBS.append(f"{folder}: refused")
            ret = JobReturn(overrides=list(cfg.hydra.overrides.task), cfg=cfg, working_dir=str(folder), status=JobStatus.COMPLETED)
            ret.return_value = worst_objective(cfg.early_stopping.metric)
            return ret
        ret = run_job(hydra_context=self.hydra_context, task_function=task, config=cfg,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")  # fmt: skip
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def _stack(self, configs, stack: list[int], prepare, label: str) -> dict[int, JobReturn]:
        """Prepare each job in its own folder (Hydra's bookkeeping, validation, setup), train the prepared
        ones together, and give each job its own result."""
        from nnlab.run_files import Member

        returns, members = {}, []
        for i in stack:
            ret = self._run(configs[i], prepare)
            returns[i] = ret
            value = ret.return_value if ret.status == JobStatus.COMPLETED else None
            if isinstance(value, Member):  # ready to train (else: its objective, it trained alone)
                members.append((i, value))
        if members:
            from nnlab.train import train

            summaries = train([m for _, m in members], label)
            for (i, m), value in zip(members, after_stack([m for _, m in members], summaries)):
                returns[i].return_value = value
        return returns


