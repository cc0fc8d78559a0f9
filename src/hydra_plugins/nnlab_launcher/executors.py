"""Where the batched launcher's groups train when `hydra.launcher.executor` is not `local`: each group (a
stack, or a job that trains alone) is ONE task of submitit (`submitit_local`, `submitit_slurm`: one element
of a job array) or Ray (`ray`: one remote call), which builds and trains its stack on the worker and writes
every member's run folder there (jobs.task.run_group: what the local executor runs in the launcher's process).

A task carries plain data: its members' composed configs (each naming its folder and job number), Hydra's
context and global state (as Hydra's own submitit launcher ships them); never open files or torch objects.
Its result is each member's JobReturn (the sweeper's value) and Outcome (nnlab/jobs/task.py: why it has no result, if so). A task that dies (a preempted node, an
out-of-memory kill, `scancel`) loses only its group: its members are reported failed with the reason,
and the same command with `resume=auto` trains exactly the missing and interrupted ones. Preempted or timed
out under submitit, a task requeues itself with `resume=auto` (its members continue from their
checkpoints).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from omegaconf import DictConfig, open_dict

CLUSTERS = {"submitit_local": "local", "submitit_slurm": "slurm"}
RAY_TASK = ("num_cpus", "num_gpus", "resources", "memory")  # hydra.launcher.ray.* that each remote call asks for


class GroupTask:
    """One group as a unit of work: called on the worker."""

    def __init__(self, configs: list[DictConfig], label: str, hydra_context, singleton_state) -> None:
        self.configs, self.label, self.hydra_context, self.singleton_state = (
            configs,
            label,
            hydra_context,
            singleton_state,
        )

    def __call__(self) -> tuple[list[JobReturn], list]:
        from nnlab.jobs.task import Train, run_group

        Singleton.set_state(self.singleton_state)
        setup_globals()
        return run_group(Train(), self.hydra_context, self.configs, self.label)

    def resumed(self) -> GroupTask:
        """The same task, its members continuing their checkpoints (resume=auto)."""
        configs = [cfg.copy() for cfg in self.configs]
        for cfg in configs:
            with open_dict(cfg):
                cfg.resume = "auto"
        return GroupTask(configs, self.label, self.hydra_context, self.singleton_state)


class _Call:
    """What submitit runs: a task; preempted or timed out, submitit asks checkpoint() what to requeue."""

    def __call__(self, task: GroupTask) -> tuple[list[JobReturn], list]:
        return task()

    def checkpoint(self, task: GroupTask):
        import submitit

        return submitit.helpers.DelayedSubmission(self, task.resumed())


def send(executor: str, params: dict, groups: list[list[DictConfig]], hydra_context, sweep_dir, session) -> dict:
    """Every group as one task of `executor`; each member's JobReturn, by its folder, once all are back
    (their Outcomes into the command's jobs.task.Session)."""
    from nnlab.jobs.task import folder_of
    from nnlab.views.console import console, shown

    tasks = [GroupTask(g, f"{n}/{len(groups)}", hydra_context, Singleton.get_state()) for n, g in enumerate(groups, 1)]
    sizes = [len(g) for g in groups]
    where = (
        "Ray"
        if executor == "ray"
        else f"submitit ({CLUSTERS[executor]}; logs: {shown(Path(str(sweep_dir)) / '.submitit')})"
    )
    console.print(
        f"sending {len(tasks)} task{'s' if len(tasks) > 1 else ''} to {where}: {sum(sizes)} runs, {_counts(sizes)}",
        soft_wrap=True,
    )
    waits = (
        _ray(params["ray"], tasks)
        if executor == "ray"
        else _submitit(CLUSTERS[executor], params["submitit"], tasks, sweep_dir)
    )
    returns: dict[str, JobReturn] = {}
    for n, (task, wait) in enumerate(zip(tasks, waits), 1):
        try:
            returned, outcomes = wait()
            got = {folder_of(c): (r, o) for c, r, o in zip(task.configs, returned, outcomes)}
            lost = ""
        except Exception as e:  # the task died: its members are lost, the others stand
            got, lost = {}, _first_line(e)
        console.print(
            f"\\[task {n}/{len(tasks)}] {len(task.configs)} run{'s' if len(task.configs) > 1 else ''}"
            + (f": the task died ({lost})" if lost else ""),
            soft_wrap=True,
        )
        for cfg in task.configs:
            returns[folder_of(cfg)], outcome = member_result(cfg, got.get(folder_of(cfg)), lost)
            session.outcomes.append(outcome)
    return returns


def _counts(sizes: list[int]) -> str:
    """`3 tasks of 4 runs` / `runs per task: 16, 16, 1`."""
    if len(set(sizes)) == 1:
        return f"{sizes[0]} per task" if len(sizes) > 1 else "one task"
    return "runs per task: " + ", ".join(map(str, sizes))


def member_result(cfg: DictConfig, got, lost: str):
    """A member's JobReturn as the sweeper sees it and its Outcome (`got`: both, from the worker; None where
    the task died), and its line: its status and test scores (its summary.json), or why it has none (the
    sweep then exits 1 and says resume=auto)."""
    from nnlab.jobs.task import Outcome, folder_of
    from nnlab.metrics import worst_objective
    from nnlab.run_files.records import read_summary
    from nnlab.views.console import console, result_line

    folder = folder_of(cfg)
    summary = read_summary(folder)
    status = (summary["status"] or "unknown") if summary is not None else ("lost: " + lost if lost else "no summary")
    console.print(result_line(Path(folder).name, status, (summary or {}).get("metrics", {})), soft_wrap=True)
    if got is not None:
        return got
    ret = JobReturn(overrides=list(cfg.hydra.overrides.task), cfg=cfg, working_dir=folder, status=JobStatus.COMPLETED)
    ret.return_value = worst_objective(cfg.early_stopping.metric)
    return ret, Outcome(folder, ret.return_value, status if summary is None or status == "failed" else None)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _submitit(cluster: str, params: dict, tasks: list[GroupTask], sweep_dir) -> list[Callable[[], list]]:
    """One job array, an element a task; `params` go to submitit's update_parameters (timeout_min,
    gpus_per_node, cpus_per_task, mem_gb, slurm_partition, slurm_array_parallelism, ...)."""
    import submitit

    executor = submitit.AutoExecutor(folder=Path(str(sweep_dir)) / ".submitit", cluster=cluster)
    executor.update_parameters(**{"name": "nnlab", "timeout_min": 24 * 60, **params})
    jobs = executor.map_array(_Call(), tasks)
    return [job.result for job in jobs]


def _call_task(task: GroupTask) -> list[JobReturn]:
    return task()


def _ray(params: dict, tasks: list[GroupTask]) -> list[Callable[[], list]]:
    """One remote call a task, each asking for hydra.launcher.ray's num_cpus (1), num_gpus, resources,
    memory; ray.init(address=...) where an address is given, else a local instance whose session files go
    to a temporary folder (not ~). Each task is sent with resume=auto: a fresh member starts afresh, and
    where Ray retries a task whose worker died, its members continue from their checkpoints."""

    import ray

    if not ray.is_initialized():
        address = params.get("address")
        ray.init(
            address=address,
            include_dashboard=False,
            **({} if address else {"_temp_dir": tempfile.mkdtemp(prefix="nnlab-ray-")}),
        )
    remote = ray.remote(_call_task).options(**{"num_cpus": 1, **{k: params[k] for k in RAY_TASK if k in params}})
    refs = [remote.remote(t.resumed()) for t in tasks]  # Ray retries a task whose worker died: it continues its members
    return [lambda ref=ref: ray.get(ref) for ref in refs]
