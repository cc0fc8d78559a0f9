"""Running a sweep's jobs: `hydra/launcher=batched`, nnlab's own Hydra launcher (the default of
`nnlab train -m`).

It takes the jobs any sweeper gives it, groups those that can train together, and trains each group as
ONE stacked model in this process: the members' weights live side by side in [K, ...] tensors, one
batched matrix product runs every member's forward and one backward pass every member's gradients.
Everything else stays each member's own: its Experiment (built by setup() from its own config: data
draw, split, initialization, optimizer and schedule with its own settings), its generators (shuffling,
noise, dropout), diagnostics, alarms, early stopping, checkpoints and run folder. A member's layers are
views into the stack, so its own model, optimizer and files work unchanged: a member is a run made alone,
trained faster. The other jobs run one after another in this process, as with the basic launcher.

What may differ inside a group: see GROUPABLE. A group is MLPs without batch norm, with a parameter-free
elementwise activation (relu, tanh, sigmoid, elu, gelu, ...), plain dropout, fp32, no torch.compile,
pretraining or transfer, no activity L1, starting fresh (a job that resumes a checkpoint runs alone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict


# Keys whose values may differ between the members of one group (prefixes of dotted keys): each member
# builds its own objects from them. Every other key must be equal for jobs to train as one stack.
GROUPABLE = (
    "trainer.seed", "trainer.log_every", "trainer.eval_every", "trainer.boundary_every", "trainer.checkpoint_every",
    "trainer.keep_checkpoints", "trainer.progress", "data.source.seed",
    "optimizer.", "schedule.", "init.", "loss.label_smoothing", "loss.delta", "model.dropout",
    "regularization.l1", "regularization.input_noise", "regularization.clip_grad_norm", "regularization.clip_grad_value",
    "regularization.max_norm", "early_stopping.", "diagnostics.", "alarms.", "sweep.", "check.", "lr_find.",
    "batch_size_find.", "resume", "overwrite",
)  # fmt: skip


def group_key(cfg: DictConfig) -> tuple[Optional[str], str]:
    """What must be equal for jobs to train as one stack, or (None, why this job trains alone)."""
    from nnlab.tracking import flatten

    c = cfg
    why = ("a conv net (on a CPU a vmapped stack of 8 classic CNNs steps 1.9x slower than the 8 one after "
           "another: scripts/bench.py --only cnnstack)" if not str(c.model._target_).endswith(".MLP")
           else "batch norm" if c.model.get("batch_norm")
           else "torch.compile" if c.trainer.compile
           else f"precision {c.trainer.precision}" if c.trainer.precision != "fp32"
           else "pretraining" if c.pretrain.method != "none"
           else "activity L1 (per-layer hooks)" if c.regularization.activity_l1 > 0
           else "transfer learning" if c.transfer.init_from and c.transfer.mode != "none"
           else "an activation with parameters or pieces" if str(c.activation._target_) in ("torch.nn.PReLU", "nnlab.nn.activations.Maxout")
           else "augmentation" if c.data.augment
           else "sweep.on_failure=stop: jobs in order, the first failure ends the sweep" if c.sweep.on_failure == "stop"
           else None)  # fmt: skip
    if why:
        return None, why
    flat = flatten({k: OmegaConf.to_container(c[k], resolve=True) if isinstance(c[k], DictConfig) else c[k]
                    for k in c if k != "hydra"})  # fmt: skip
    fixed = {k: v for k, v in flat.items() if not k.startswith(GROUPABLE)}
    return repr(sorted(fixed.items())), ""


def sweep_config(base: Optional[DictConfig], base_overrides: list[str], overrides: list[str]) -> Optional[DictConfig]:
    """A job's config from the first job's (`base`, composed by Hydra from `base_overrides`) where the two
    differ only in plain values (trainer.seed=3, optimizer.lr=0.1): those set on a copy, as Hydra sets a
    value override after composing, and Hydra's own record of the job (its overrides, its folder name)
    written as Hydra writes it. None where that is not the same as composing (a config group, +/~, a
    package): the caller composes. Composing costs ~0.15 s a job; this, milliseconds."""
    import copy

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra._internal.config_loader_impl import get_overrides_dirname

    if base is None or len(base_overrides) != len(overrides):
        return None
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(list(overrides))
    groups = set(base.hydra.runtime.choices.keys())
    for o, before in zip(parsed, base_overrides):
        if o.input_line == before:
            continue
        key = o.key_or_group
        if o.is_add() or o.is_force_add() or o.is_delete() or o.package is not None or key in groups or o.is_hydra_override():
            return None
        if before.split("=", 1)[0] != o.input_line.split("=", 1)[0]:
            return None
    cfg = copy.deepcopy(base)
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
        cfg.hydra.job.override_dirname = get_overrides_dirname(overrides=app, kv_sep=c.kv_sep, item_sep=c.item_sep,
                                                               exclude_keys=c.exclude_keys)  # fmt: skip
    return cfg


def short_dirname(name: str, num: int) -> str:
    """A job's folder name (Hydra's override_dirname, `optimizer.lr=0.005547119471592123,...`, as optuna's
    trials have them) with every float rounded to 4 significant digits (`optimizer.lr=0.005547`); where
    that rounded anything, the job's number is added (`...,job=3`): no two jobs of a sweep share a folder."""
    from nnlab.report import round_floats

    out = round_floats(name)
    return name if out == name else f"{out},job={num}"


def _safe_key(cfg: DictConfig) -> tuple[Optional[str], str]:
    try:
        return group_key(cfg)
    except Exception:  # a config that does not even compose into one: the job reports it, alone
        return None, "its config does not build"


def _differ(names: list[str]) -> str:
    """What differs between the jobs' override lists, e.g. 'trainer.seed=0..15' or 'optimizer.lr=0.1,0.01'."""
    parts = [dict(p.split("=", 1) for p in n.split() if "=" in p) for n in names]
    keys = [k for k in dict.fromkeys(k for p in parts for k in p) if len({p.get(k) for p in parts}) > 1]
    shown = []
    for k in keys:
        values = list(dict.fromkeys(p.get(k, "-") for p in parts))
        ints = all(v.lstrip("-").isdigit() for v in values)
        if ints and len(values) > 2 and [int(v) for v in values] == list(range(int(values[0]), int(values[0]) + len(values))):
            shown.append(f"{k}={values[0]}..{values[-1]}")
        else:
            shown.append(f"{k}={','.join(values)}")
    return " ".join(shown) or "identical configs"


# ----------------------------------------------------------------------------------------------------
# A prepared member, and the training of a stack


@dataclass
class Member:
    """A job set up and ready to train (its folder locked, its files opened), waiting for its stack."""

    cfg: DictConfig
    run_dir: Path
    exp: Any  # setup.Experiment
    tracker: Any  # tracking.Tracker
    lock: Any  # run_folder.Lock, held until the member is done
    rng: Any  # the torch RNG state its run alone would have now: its dropout masks come from it
    training: Any = None  # train.Training
    done: bool = False
    failed: Optional[BaseException] = None


def prepare(cfg: DictConfig, run_dir: str | Path, job: dict, cpu_share) -> Any:
    """The first half of `nnlab train` for a job of a stack: everything up to the first step. A job that
    continues a checkpoint (or has finished) runs alone, here, as with the basic launcher."""
    import torch

    from nnlab import run_folder, train
    from nnlab.run_files import open_run
    from nnlab.setup import setup

    run_dir = Path(run_dir)
    if cfg.resume is not None and ((run_dir / "checkpoints" / "last.pt").exists() or (run_dir / "summary.json").exists()):
        from nnlab.metrics import objective

        return objective(train.run(cfg, run_dir, job=job, cpu_share=cpu_share), cfg.early_stopping.metric)
    lock = run_folder.Lock(run_dir).__enter__()
    try:
        run_folder.check_start(run_dir, cfg.resume, cfg.overwrite)
        run_folder.remove_leftovers(run_dir)
        exp = setup(cfg, cpu_share)
        rng = torch.get_rng_state()  # what its run alone would draw dropout masks from
        return Member(cfg, run_dir, exp, open_run(cfg, run_dir, exp, None, job, quiet=True), lock, rng)
    except BaseException:
        lock.__exit__()
        raise


def train_together(members: list[Member], label: str = "") -> list[Optional[dict]]:
    """Train the members as one stack, each writing its own run folder; their summaries, in order (None
    for a member that failed: its folder says why)."""
    from nnlab.figures import Painter

    painter = Painter() if len(members) > 1 else None  # the members' figures drawn beside the training
    try:
        return _train_together(members, label, painter)
    finally:
        if painter is not None:
            painter.close()


def _train_together(members: list[Member], label: str, painter) -> list[Optional[dict]]:
    from nnlab.nn.stack import Stack
    from nnlab.tracking import write_summary
    from nnlab.train import StopRequest, Training

    for m in members:
        m.tracker.painter = painter
    stack = Stack([m.exp.model for m in members])
    if not stack.problem:  # the members' parameters are views into the stack now: their own steps follow them
        from nnlab.optim import stack_of_one

        for m in members:
            m.exp.step = None if m.exp.step is None else stack_of_one(m.exp.optimizer, m.exp.weights, m.exp.regularization)
    if stack.problem:
        from nnlab.console import warning

        warning(f"these runs cannot share one stack ({stack.problem}): they train one after another")
    elif not stack.fuse([m.exp for m in members]):
        from nnlab.console import warning

        warning(f"the stack's members step one optimizer each ({stack.unfused}): correct, and slower")
    started, stop = time.perf_counter(), StopRequest()
    with stop:
        for m in members:
            m.training = _as(m, lambda m=m: Training(m.exp, m.run_dir, m.tracker))
            if m.training is not None:
                m.training.stop = stop  # one signal handler for the stack: a SIGTERM saves every member
        if stack.problem:
            for m in members:
                _as(m, lambda m=m: _alone(m))
        else:
            for epoch in members[0].training.epochs() if members[0].training else ():
                if all(m.done for m in members):
                    break
                running = [m for m in members if not m.done]
                _epoch(stack, members, epoch)
                for m in running:
                    if not m.done and not _as(m, lambda m=m: m.training.end_epoch(epoch)):
                        m.done = True
    curves: list = []
    try:
        summaries = [_close(m, len(members), label, time.perf_counter() - started, painter, curves) for m in members]
        for drawing in curves:
            drawing.result()
        for m, summary in zip(members, summaries):  # summary.json last: a kill before it leaves the run resumable
            if summary is not None:
                write_summary(m.run_dir, summary)
    finally:
        for m in members:
            m.lock.__exit__()
    return summaries


def _alone(m: Member) -> bool:
    """Train a member on its own (its stack could not be built): fit()'s loop, on its objects."""
    from nnlab.train import drive

    drive(m.training)
    m.done = True
    return True


def _epoch(stack, members: list[Member], epoch: int) -> None:
    """One epoch of every running member, step by step: their batches side by side through the stack."""
    import torch

    from nnlab.optim import per_epoch
    from nnlab.train import update

    batches = [m.training.batches(epoch) if not m.done else None for m in members]
    while True:
        items = [next(b, None) if b is not None and not m.done else None for m, b in zip(members, batches)]
        if all(i is None for i in items):
            return
        like = next(i for i in items if i is not None)[0]
        x = torch.stack([i[0] if i is not None else torch.zeros_like(like) for i in items])
        for m, i in zip(members, items):
            if i is not None:
                m.training.before_step()
        stack.zero_grad()
        out = stack.forward(x, members, [i is not None for i in items])
        objective, losses = 0, {}
        for k, (m, i) in enumerate(zip(members, items)):
            if i is None:
                continue
            losses[k] = m.exp.loss_fn(out[k], i[1])
            objective = objective + losses[k]
            if m.exp.regularization.l1 > 0:  # on the stack's slices: their gradient reaches the stack
                objective = objective + m.exp.regularization.l1 * sum(w[k].abs().sum() for w in stack.weights)
        objective.backward()
        stack.share_grads()
        norms = None
        if stack.step is not None:  # one update of every member: optim.StackedUpdate
            norms = stack.step(torch.tensor([i is not None for i in items]))
        for k, (m, i) in enumerate(zip(members, items)):
            if i is None:
                continue

            def after(m=m, k=k, y=i[1]):
                if norms is None:
                    norm = update(m.exp, m.training.scaler)
                else:
                    norm = norms[k]
                    if not per_epoch(m.exp.scheduler):
                        m.exp.scheduler.step()
                return m.training.after_step(epoch, out[k].detach(), y, losses[k].detach(), norm)

            if not _as(m, after):
                m.done = True


def after_stack(members: list[Member], summaries: list[Optional[dict]]) -> list[float]:
    """The sweeper's value of each member (the worst for one that failed or diverged), after the sweep's
    own rules: a signal stops the whole sweep (its checkpoints saved), as does a failure under
    sweep.on_failure=stop."""
    import signal
    import sys

    from nnlab.console import error, warning
    from nnlab.metrics import objective, worst_objective

    values = []
    for m, summary in zip(members, summaries):
        metric = m.cfg.early_stopping.metric
        values.append(objective(summary, metric) if summary is not None else worst_objective(metric))
    stopped = next((s for s in summaries if s is not None and s["status"] == "interrupted"), None)
    if stopped is not None:
        warning(f"interrupted by {stopped['signal']}: every member's checkpoint saved; continue the sweep with the "
                "same command and resume=auto")  # fmt: skip
        sys.exit(128 + signal.Signals[stopped["signal"]].value)
    from nnlab.errors import FAILED_JOBS

    FAILED_JOBS.extend(f"{m.run_dir}: failed" for m, s in zip(members, summaries) if s is None)
    bad = [m for m, s in zip(members, summaries) if s is None or s["status"] not in ("ok",)]
    if bad and bad[0].cfg.sweep.on_failure == "stop":
        error(f"{bad[0].run_dir} did not end well; the sweep stops here (sweep.on_failure=stop)")
        sys.exit(1)
    return values


def _as(m: Member, work):
    """Run a member's part with the global torch RNG as its own (checkpoints save it, dropout draws
    from it); a failure ends that member alone (recorded in its folder), not the stack."""
    import torch

    outside = torch.get_rng_state()
    torch.set_rng_state(m.rng)
    try:
        return work()
    except Exception as e:  # noqa: BLE001  (any failure of one member: its folder says what, the others go on)
        from nnlab.console import error
        from nnlab.errors import SaveError
        from nnlab.tracking import record_failure

        m.done, m.failed = True, e
        try:
            record_failure(m.run_dir, e)
        except OSError:
            pass
        what = str(e) if isinstance(e, SaveError) else f"{type(e).__name__}: {e}"
        error(f"{m.run_dir}: {what} (this run stops; the others go on)", title="failure")
        return None
    finally:
        m.rng = torch.get_rng_state()
        torch.set_rng_state(outside)


def _close(m: Member, size: int, label: str, wall: float, painter, curves: list) -> Optional[dict]:
    """Test, the closing figures, curves (drawn by the painter: added to `curves`); the summary (with how
    it was trained), for the caller to write once the curves are drawn."""
    from nnlab.console import console, shown
    from nnlab.figures import Drawing, run_curves
    from nnlab.run_files import final_figures

    summary = None
    if m.training is not None and m.failed is None:
        summary = _as(m, m.training.finish)
    if summary is not None:
        summary["batch"] = {"stack": label, "members": size, "wall_time_s": wall}
        _as(m, lambda: final_figures(m.exp, m.run_dir, m.tracker, summary))
        summary = None if m.failed is not None else summary  # its folder says why (summary.json: failed)
    m.tracker.close()
    if summary is not None:
        args = (m.run_dir, m.exp.data.kind)
        curves.append(painter.submit(run_curves, *args) if painter is not None else Drawing(run_curves, args))
        score = "  ".join(f"{k} {v:.4f}" for k, v in summary["metrics"].items() if k.endswith("/test"))
        console.print(f"  {shown(m.run_dir.name)}: {summary['status']}  {score}", soft_wrap=True)
    return summary
