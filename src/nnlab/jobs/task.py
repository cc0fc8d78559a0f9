"""What a job is: the one seam between Hydra (its sweepers and launchers, nnlab's own plugins) and nnlab's
commands.

A command that composes configs (`nnlab train`, `check`, `lr-find`, `batch-size-find`) hands Hydra a `Task`,
the callable Hydra runs once per job inside its job context (the job's folder made, its `.hydra/`
record written). The task turns the config into a `Job` (validated; its folder, its group choices, its
overrides, whether it is one of a sweep's), does the command's work on it, and ends with an `Outcome`:
the value a sweeper optimizes and, where the job has no result, why (refused, failed, could not write, a
check that did not pass). Hydra's sweepers see the value; the outcomes stay in the task's `Session`,
with the rest of the command's process state (the output folder the pre-flight claimed, its lock, a
resumed run's files as they were), which the command reads when it closes: nothing is shared through
module globals.

The error boundary of a job is `Task.__call__`: a user error is one paragraph (exit 2 for a run alone,
the sweep goes on otherwise), a crash is recorded in the run folder (summary.json "failed", error.txt)
and said in one paragraph. nnlab's batched launcher asks a task whether its jobs may train as one stack
(`Task.stacks`), prepares each member through `Train.prepare` inside Hydra's job context, and trains the
members together (`run_group`): one Outcome per member. On a submitit or Ray worker a fresh `Train` task
does the same; its outcomes travel back with the group's results.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


@dataclass(frozen=True)
class Job:
    """One job as a command's work sees it: its config (validated), its folder, and Hydra's record of it."""

    cfg: DictConfig
    run_dir: Path
    choices: dict[str, Any]  # the config groups' options (hydra.runtime.choices)
    overrides: tuple[str, ...]  # its command-line overrides (hydra.overrides.task)
    sweep: bool  # one of a sweep's jobs (-m)
    overview: bool  # its folder gets an overview of runs (a sweep's, or outputs/runs/)
    cpu_share: int | None  # its share of the cores where a parallel launcher runs several at once


@dataclass(frozen=True)
class Outcome:
    """How a job ended: `value`, what a sweeper optimizes (None: nothing to optimize); `failure`, why it
    has no result (None: it has one)."""

    run_dir: str
    value: float | int | None = None
    failure: str | None = None

    @property
    def line(self) -> str:
        return f"{self.run_dir}: {self.failure}"


@dataclass
class Session:
    """A command's process state between its pre-flight, its jobs and its closing."""

    made: Path | None = None  # the outermost folder the pre-flight created (gone again if nothing is trained)
    lock: Any = None  # run_folder.Lock on the output folder, held until the command ends
    sweep: Path | None = None  # the folder of this command's sweep (-m)
    runs: Path | None = None  # the folder of runs alone a run named by its time is in (outputs/runs): its overview
    kept: dict[Path, bytes] = field(default_factory=dict)  # a resumed run's .hydra files, put back if it stops early
    outcomes: list[Outcome] = field(default_factory=list)
    brief: bool = False  # another command's part (nnlab doctor's): a run says one line, a sweep writes its report

    @property
    def failures(self) -> list[str]:
        return [o.line for o in self.outcomes if o.failure is not None]

    def remove_made(self) -> None:
        """The folder the pre-flight made, where it still holds nothing but bookkeeping: gone again."""
        from nnlab.run_files.folder import remove_made

        remove_made(self.made)

    def release(self) -> None:
        """Let go of the output folder's lock (its .lock goes with it)."""
        if self.lock is not None:
            self.lock.__exit__()
            self.lock = None


class Task:
    """A command's work as Hydra's task function: `task(cfg)` runs one job and returns its value."""

    stacks = False  # whether nnlab's batched launcher may train its jobs as one stack

    def __init__(self, session: Session | None = None) -> None:
        self.session = session if session is not None else Session()

    def __reduce__(self):
        """To another process (joblib's workers): the task with what its jobs read of the session."""
        return (type(self), (Session(sweep=self.session.sweep, runs=self.session.runs),))

    def __call__(self, cfg: DictConfig) -> float | int | None:
        """What Hydra runs (its basic launcher, joblib): the job's value; its Outcome kept in the session."""
        outcome = self.outcome(cfg)
        self.session.outcomes.append(outcome)
        return outcome.value

    def outcome(self, cfg: DictConfig) -> Outcome:
        """One job, behind its error boundary: how it ended."""
        return self.guarded(cfg, self.work)

    def work(self, job: Job) -> Outcome:
        raise NotImplementedError

    def guarded(self, cfg: DictConfig, work) -> Any:
        """`work(job)` behind the job's error boundary: validate first; a user error is one paragraph and
        exit 2; a crash is recorded in the run folder. In a sweep neither stops the other jobs (the sweeper
        sees the worst value for this one), unless sweep.on_failure=stop."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from nnlab.config.validate import validate
        from nnlab.errors import ConfigError, FolderInUse, SaveError
        from nnlab.run_files.tracking import record_failure
        from nnlab.views.console import defer_interrupts, error, exit_with

        defer_interrupts(False)  # Hydra has composed this job: a signal noted meanwhile interrupts here
        hc = HydraConfig.get()
        sweep = hc.mode == RunMode.MULTIRUN
        run_dir = hc.runtime.output_dir
        goes_on = (
            ""
            if not sweep
            else f"job {hc.job.num} failed; "
            + (
                "the sweep goes on"
                if cfg.sweep.on_failure != "stop"
                else "the sweep stops here (sweep.on_failure=stop)"
            )
        )
        try:
            validate(cfg)
            overview = sweep or self.session.runs is not None
            job = Job(
                cfg, Path(run_dir), dict(hc.runtime.choices), tuple(hc.overrides.task), sweep, overview, _cpu_share(hc)
            )
            return work(job)
        except ConfigError as e:
            if not sweep:
                self.session.remove_made()  # the pre-flight made it under its lock: no half-made folder
                for path, content in self.session.kept.items():  # a resume that stopped before training changes nothing
                    path.write_bytes(content)
                exit_with(str(e))
            if not isinstance(e, FolderInUse):  # that folder is another process's: write nothing there
                record_failure(run_dir, e)
            error(f"{e} ({goes_on})")
            failure = "refused"
        except (SaveError, OSError) as e:  # full disk, quota, read-only folder: say so, no traceback
            message = str(e) if isinstance(e, SaveError) else _write_failure(e, run_dir)
            try:
                record_failure(run_dir, e)
            except OSError:
                pass  # the disk that failed the run may fail this too; the message says it all
            error(message + ("" if not sweep else f" ({goes_on})"), title="cannot write")
            if not sweep:
                sys.exit(1)
            failure = "could not write"
        except Exception as e:  # a crash: keep what was written, say where the traceback is
            from nnlab.views.console import interrupted

            if interrupted():  # Ctrl-C inside a C extension's import surfaces as an ImportError
                raise KeyboardInterrupt from None
            path = record_failure(run_dir, e)
            where = f" ({goes_on})" if sweep else ""
            error(f"the run failed: {type(e).__name__}: {e}. Traceback: {path}{where}", title="failure")
            if not sweep:
                sys.exit(1)
            failure = "failed"
        if cfg.sweep.on_failure == "stop":
            sys.exit(1)
        from nnlab.metrics import worst_objective

        return Outcome(str(run_dir), worst_objective(cfg.early_stopping.metric), failure)


class Train(Task):
    """`nnlab train`: one run alone (`task(cfg)`), or, through the batched launcher, a member of a stack
    (`prepare`, then `run_group`)."""

    stacks = True

    def work(self, job: Job) -> Outcome:
        from nnlab.training.loop import train
        from nnlab.training.member import prepare

        quiet = self.session.brief or (job.sweep and job.cfg.sweep.each_run == "line")  # one line as it ends
        member = prepare(job.cfg, job.run_dir, job, job.cpu_share, quiet=quiet)
        return self.ended(job, member if isinstance(member, dict) else train([member], quiet=quiet)[0])

    def ended(self, job: Job, summary: dict) -> Outcome:
        """A run's outcome from its summary, after the sweep's rules: a signal stops the whole sweep (its
        checkpoint saved), as does a run that ended badly under sweep.on_failure=stop."""
        from nnlab.metrics import objective

        if summary["status"] not in ("ok", "interrupted") and job.cfg.sweep.on_failure == "stop":
            from nnlab.views.console import error

            error(f"{job.run_dir} ended {summary['status']}; the sweep stops here (sweep.on_failure=stop)")
            sys.exit(1)
        if summary["status"] == "interrupted":  # saved; now stop, the whole sweep too
            from nnlab.views.console import warning

            warning(f"interrupted by {summary['signal']}: checkpoint saved; continue with resume={job.run_dir}")
            sys.exit(128 + signal.Signals[summary["signal"]].value)
        return Outcome(str(job.run_dir), objective(summary, job.cfg.early_stopping.metric))

    def prepare(self, cfg: DictConfig):
        """A member of a stack up to its first step (run_files.Member), which run_group trains with the
        others; a job that continues a checkpoint, or has finished, trains alone here, as with the basic
        launcher: its Outcome."""
        return self.guarded(cfg, self._member)

    def _member(self, job: Job):
        from nnlab.training.member import prepare

        cfg = job.cfg
        if cfg.resume is not None and any((job.run_dir / f).exists() for f in ("checkpoints/last.pt", "summary.json")):
            return self.work(job)
        return prepare(cfg, job.run_dir, job, job.cpu_share, quiet=True, shared=True)


class Check(Task):
    """`nnlab check`: a check that does not pass is exit 1; in a sweep (nnlab check -m) the other configs
    are still checked, and the sweep ends with exit 1 naming the ones that did not pass."""

    def work(self, job: Job) -> Outcome:
        from nnlab.commands.check import check

        if check(job.cfg, job.run_dir, job.cpu_share):
            return Outcome(str(job.run_dir))
        if not job.sweep:
            sys.exit(1)
        return Outcome(str(job.run_dir), failure="a check failed")


class LrFind(Task):
    """`nnlab lr-find`: the suggested rate is the job's value."""

    def work(self, job: Job) -> Outcome:
        from nnlab.commands.lr_find import find_rate

        return Outcome(str(job.run_dir), find_rate(job.cfg, job.run_dir, job.cpu_share, job.overrides))


class BatchSizeFind(Task):
    """`nnlab batch-size-find`: the largest batch size that trains is the job's value."""

    def work(self, job: Job) -> Outcome:
        from nnlab.commands.batch_size_find import find_batch_size

        return Outcome(str(job.run_dir), find_batch_size(job.cfg, job.run_dir, job.cpu_share))


TASKS = {"train": Train, "check": Check, "lr-find": LrFind, "batch-size-find": BatchSizeFind}


def run_group(task: Task, hydra_context, configs: list[DictConfig], label: str) -> tuple[list, list[Outcome]]:
    """One group of a sweep's jobs in this process (the launcher's, or a worker's): a job alone through
    Hydra's run_job; a stack's jobs each prepared in its own folder (Hydra's record, validation, setup),
    then trained together. Returns the JobReturns (their value: the sweeper's) and the Outcomes, in the
    configs' order."""
    from hydra.core.utils import JobStatus

    from nnlab.training.member import Member

    stacked = len(configs) > 1 and task.stacks
    returns, outcomes, members = [], [], []
    for i, cfg in enumerate(configs):
        ret = _run(hydra_context, cfg, task.prepare if stacked else task.outcome)
        got = ret.return_value if ret.status == JobStatus.COMPLETED else None
        if isinstance(got, Member):  # ready to train (else: its Outcome: it ran alone, or was refused)
            members.append((i, got))
            outcomes.append(None)
        else:
            outcomes.append(got if isinstance(got, Outcome) else _lost(cfg, "failed"))
        returns.append(ret)
    if members:
        from nnlab.training.loop import train

        summaries = train([m for _, m in members], label)
        for (i, m), summary in zip(members, summaries):
            outcomes[i] = _stacked(m, summary)
        _stop_if_asked([m for _, m in members], summaries)
    for ret, outcome in zip(returns, outcomes):
        if ret.status == JobStatus.COMPLETED:  # (a job whose run_job failed keeps its exception for the sweeper)
            ret.return_value = outcome.value
    task.session.outcomes.extend(outcomes)
    return returns, outcomes


def _stacked(member, summary: dict | None) -> Outcome:
    from nnlab.metrics import objective, worst_objective

    metric = member.cfg.early_stopping.metric
    if summary is None:  # it failed inside the stack (its folder says why)
        return Outcome(str(member.run_dir), worst_objective(metric), "failed")
    return Outcome(str(member.run_dir), objective(summary, metric))


def _stop_if_asked(members: list, summaries: list[dict | None]) -> None:
    """After a stack, the sweep's rules: a signal stops the whole sweep (every member's checkpoint saved),
    as does a member that ended badly under sweep.on_failure=stop."""

    from nnlab.views.console import error, warning

    stopped = next((s for s in summaries if s is not None and s["status"] == "interrupted"), None)
    if stopped is not None:
        warning(
            f"interrupted by {stopped['signal']}: every member's checkpoint saved; continue the sweep with the "
            "same command and resume=auto"
        )
        sys.exit(128 + signal.Signals[stopped["signal"]].value)
    bad = [m for m, s in zip(members, summaries) if s is None or s["status"] != "ok"]
    if bad and bad[0].cfg.sweep.on_failure == "stop":
        error(f"{bad[0].run_dir} did not end well; the sweep stops here (sweep.on_failure=stop)")
        sys.exit(1)


def _lost(cfg: DictConfig, why: str) -> Outcome:
    from nnlab.metrics import worst_objective

    return Outcome(folder_of(cfg), worst_objective(cfg.early_stopping.metric), why)


def folder_of(cfg: DictConfig) -> str:
    """A sweep job's run folder (Hydra's hydra.sweep.dir/hydra.sweep.subdir)."""
    return str(Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir))


def _run(hydra_context, cfg: DictConfig, task_function):
    """One job as Hydra's run_job runs it (its folder, its `.hydra/` record, its logging into train.log,
    Hydra's callbacks, env_set and chdir), at a fraction of the cost: the launcher made `cfg` for this job
    alone, so it is not copied (run_job deep-copies it twice and sets HydraConfig twice, each a copy of
    Hydra's node): its `hydra` node moves to HydraConfig while the job runs (the rest is the task's config),
    and back when it ends; the records are written by libyaml (config.text.config_yaml). ~70 ms a job
    became ~10 ms: what a member of a stack of hundreds costs. A job folder that is a link is refused (it
    would be written through) and the sweep goes on."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, env_override
    from omegaconf import flag_override, open_dict

    from nnlab.config.text import config_yaml

    folder = Path(folder_of(cfg))
    if folder.is_symlink():
        from nnlab.run_files.folder import link_message
        from nnlab.views.console import error

        error(f"{link_message(folder)} (job {cfg.hydra.job.num} refused; the sweep goes on)")
        ret = JobReturn(overrides=list(cfg.hydra.overrides.task), cfg=cfg, working_dir=str(folder))
        ret.status, ret.return_value = JobStatus.COMPLETED, _lost(cfg, "refused")
        return ret
    output_dir = os.path.abspath(folder)
    with flag_override(cfg.hydra, ["readonly", "struct"], [False, False]):
        cfg.hydra.runtime.output_dir = output_dir
    hydra = cfg._get_node("hydra")
    with open_dict(cfg):
        del cfg["hydra"]  # cfg is now the task's config
    record = DictConfig({}, flags={"no_deepcopy_set_nodes": True})
    record["hydra"] = hydra
    hydra._set_parent(record)
    overrides = list(hydra.overrides.task)
    hc, old_cwd = HydraConfig.instance(), os.getcwd()
    before, hc.cfg = hc.cfg, record
    chdir = bool(hydra.job.chdir)
    ret = JobReturn(overrides=overrides, cfg=cfg, hydra_cfg=record)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if chdir:
            os.chdir(output_dir)
        ret.working_dir = os.getcwd()
        configure_log(hydra.job_logging, hydra.verbose)
        if hydra.output_subdir is not None:
            records = folder / str(hydra.output_subdir)
            records.mkdir(parents=True, exist_ok=True)
            for name, node in (("config.yaml", cfg), ("hydra.yaml", record), ("overrides.yaml", hydra.overrides.task)):
                (records / name).write_text(config_yaml(node), encoding="utf-8")
        with env_override(hydra.job.env_set):
            hydra_context.callbacks.on_job_start(config=cfg, task_function=task_function)
            try:
                ret.return_value, ret.status = task_function(cfg), JobStatus.COMPLETED
            except Exception as e:  # noqa: BLE001  (as run_job: the sweeper sees the failed job)
                ret.return_value, ret.status = e, JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        hydra_context.callbacks.on_job_end(config=cfg, job_return=ret)
        return ret
    finally:
        hc.cfg = before
        if chdir:
            os.chdir(old_cwd)
        configure_log(hydra.hydra_logging, hydra.verbose)
        with open_dict(cfg), flag_override(cfg, "no_deepcopy_set_nodes", True):
            cfg["hydra"] = hydra  # the job's config whole again (a requeued task runs its jobs anew from it)


def _write_failure(e: OSError, run_dir: str) -> str:
    where = e.filename or run_dir
    return (
        f"could not write {where}: {e.strerror or e}. Checkpoints already saved in {run_dir} are intact; "
        f"free some space or choose another output folder (hydra.run.dir=...), then continue with resume={run_dir}."
    )


def _cpu_share(hc) -> int | None:
    """Parallel launchers (joblib; nnlab's batched launcher with several workers) run processes at once: each
    job's share of the cores, so that they do not fight over them (setup applies it where trainer.threads is
    null); None for the others."""

    launcher = hc.launcher
    target = str(launcher.get("_target_", ""))
    n_jobs = launcher.get("n_jobs") if "joblib" in target else None
    if "BatchedLauncher" in target and isinstance(launcher.get("workers"), int) and launcher.workers > 1:
        n_jobs = launcher.workers
    if not n_jobs:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // (cores if n_jobs < 0 else n_jobs))
