"""One step and one evaluation of K >= 1 members at once (a run alone is a stack of one), for the training
loop (loop.py) and the commands that step a run themselves (check, lr-find, batch-size-find): step() is one
optimizer step of every member (forward, their losses, backward, one update); the step's batch sums and
their tally over an epoch; evaluate() measures a split, validate() and test() the members' due splits in
one stacked pass.
"""

from __future__ import annotations

from contextlib import ExitStack, nullcontext

import torch

from nnlab import metrics as task_metrics
from nnlab.data.loader import Split
from nnlab.engine.schedules import per_epoch
from nnlab.engine.stack import Solo
from nnlab.nn import eval_mode
from nnlab.nn.losses import CrossEntropy, stacked_cross_entropy
from nnlab.training.member import Member, guard
from nnlab.training.setup import Experiment


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def step(engine, exps: list[Experiment], items: list) -> tuple:
    """One optimizer step of every member that has a batch (items[k]: (x, y), or None for a member that
    has stopped): forward, the members' losses, backward, one update, the per-step schedules. The members'
    losses are summed, so each member's gradient is its own loss's. Returns (outputs [K, B, ...], targets
    [K, B, ...] (targets()), data losses [K] and gradient norms before clipping [K] (0 for a member that
    did not step)), all still on the device. The data loss is what is logged and watched; the L1 penalties
    only join it for the gradient."""
    active = [i is not None for i in items]
    engine.zero_grad()
    y = targets(items)
    with autocast(exps[0].device, exps[0].trainer.precision):
        out = engine.forward([i[0] if i is not None else None for i in items], active)
        losses = data_losses(exps, out, y, active)
        objective = losses.sum()
        for k, (exp, i) in enumerate(zip(exps, items)):
            reg = exp.regularization
            if i is not None and reg.l1 > 0:
                objective = objective + reg.l1 * engine.penalty(k)
            if i is not None and reg.activity_l1 > 0:  # the member's hidden activations in this forward pass
                objective = objective + reg.activity_l1 * engine.activity(k) / len(i[1])
    engine.backward(objective)
    norms = engine.step(active)
    for exp, a in zip(exps, active):
        if a and not per_epoch(exp.scheduler):
            exp.scheduler.step()
    return out, y, losses, norms


def targets(items: list) -> torch.Tensor:
    """The members' targets as one [K, B, ...] tensor (zeros for a member without a batch)."""
    like = next(i[1] for i in items if i is not None)
    return torch.stack([i[1] if i is not None else torch.zeros_like(like) for i in items])


def data_losses(exps: list[Experiment], out: torch.Tensor, y: torch.Tensor, active: list[bool]) -> torch.Tensor:
    """Each member's data loss on its batch, [K] (0 for a member without one): the stack's cross-entropy in
    one computation (losses.stacked_cross_entropy: a backward pass of a few nodes, not K losses and their
    sum), any other loss member by member."""
    if isinstance(exps[0].loss_fn, CrossEntropy) and exps[0].trainer.precision == "fp32":
        losses = stacked_cross_entropy(out, y, [e.loss_fn.label_smoothing for e in exps])
        if losses is not None:
            if all(active):
                return losses
            return torch.where(torch.tensor(active, device=losses.device), losses, torch.zeros_like(losses))
    zero = torch.zeros((), device=out.device)
    return torch.stack([e.loss_fn(out[k], y[k]).float() if a else zero for k, (e, a) in enumerate(zip(exps, active))])


def train_step(exp: Experiment, x: torch.Tensor, y: torch.Tensor, scaler):
    """step() for a run alone: (outputs, data loss, global gradient norm)."""
    out, _, losses, norms = step(Solo(exp, scaler), [exp], [(x, y)])
    return out[0], losses[0], norms[0]


def batch_sums(kind: str, loss_fns: list, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """[loss * n, the task's metric sums (nnlab/metrics.py)] of K members' batches at once (outputs
    [K, B, ...], targets [K, B, ...], data losses [K]; loss_fns: the members' losses, whose predictions a
    regression reads through each one's link: its own target scaling): [K, 1 + sums], left on the device."""
    K, B = y.shape[:2]
    if kind == "regression":
        pred = torch.stack([task_metrics.prediction(kind, f, o) for f, o in zip(loss_fns, out)])
    else:
        pred = task_metrics.prediction(kind, loss_fns[0], out.reshape(K * B, *out.shape[2:]))
        pred = pred.reshape(K, B, *pred.shape[1:])
    return torch.cat([(loss.detach().float() * B).reshape(K, 1), task_metrics.stack_sums(kind, pred, y)], 1)


def step_sums(exps: list[Experiment], out: torch.Tensor, y: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """batch_sums of the members' step (y: targets(); the rows of members that did not step: tally_step
    leaves them out)."""
    with torch.no_grad():
        return batch_sums(exps[0].data.kind, [e.loss_fn for e in exps], out.detach(), y, losses.detach().float())


def epoch_metrics(kind: str, total: torch.Tensor | list[float], n: int) -> dict[str, float]:
    """{"loss": mean loss, "acc": ...} (regression: "mse", "mae", "r2") from summed batch_sums."""
    values = total.tolist() if isinstance(total, torch.Tensor) else list(total)
    return {"loss": values[0] / n, **task_metrics.finish(kind, values[1:], n)}


def evaluate(exp: Experiment, split: Split) -> dict[str, float]:
    """Mean loss and the task's metrics over a split, in batches, in eval mode (one host sync at the end)."""
    return _evaluate(Solo(exp, None), [exp], [split])[0]


def validate(engine, members: list[Member], epoch: int) -> dict[int, dict]:
    """The validation metrics of the members still running whose validation is due this epoch
    ({k: {"loss": ..., "acc": ...}}): a stack's in one stacked pass."""
    splits = [
        m.exp.data.val
        if not m.done
        and m.exp.data.val is not None
        and (epoch % m.exp.trainer.eval_every == 0 or epoch == m.exp.trainer.epochs)
        else None
        for m in members
    ]
    return {k: v for k, v in enumerate(_evaluate(engine, [m.exp for m in members], splits)) if v is not None}


def _evaluate(engine, exps: list[Experiment], splits: list[Split | None]) -> list[dict | None]:
    """evaluate() of K members at once, each on its own split (None: not this one), through the engine's
    forward in eval mode (dropout off, batch norm on its running statistics)."""
    due = [k for k, s in enumerate(splits) if s is not None]
    if not due:
        return [None] * len(splits)
    total, n, size = 0, len(splits[due[0]]), exps[0].trainer.eval_batch_size
    with torch.no_grad(), ExitStack() as modes:
        for e in exps:
            modes.enter_context(eval_mode(e.model))
        for start in range(0, n, size):
            items = [(s.x[start : start + size], s.y[start : start + size]) if s is not None else None for s in splits]
            active, y = [i is not None for i in items], targets(items)
            with autocast(exps[0].device, exps[0].trainer.precision):
                out = engine.forward([i[0] if i is not None else None for i in items], active)
                losses = data_losses(exps, out, y, active)
            total = total + step_sums(exps, out, y, losses)  # one host sync, at the end
    return [epoch_metrics(exps[0].data.kind, total[k], n) if s is not None else None for k, s in enumerate(splits)]


def test(engine, members: list[Member], alone: bool) -> None:
    """Each tested member's test metrics (Training.load_tested: its best checkpoint's weights), a stack's in one
    stacked pass (a member's model is a view of the stack: loading its best loads its slice); finish()
    reports them."""
    splits = [m.exp.data.test if not m.failed and guard(m, alone, m.training.load_tested) else None for m in members]
    for m, metrics in zip(members, _evaluate(engine, [m.exp for m in members], splits)):
        m.training.test = None if metrics is None else {f"{k}/test": v for k, v in metrics.items()}


def tally_step(members: list[Member], items: list, sums: torch.Tensor, tally: torch.Tensor | None) -> torch.Tensor:
    """Add the step's batch_sums [K, S] of the members that stepped to the epoch's tally [K, S], whose rows
    are their Positions' sums (views: one addition for the stack, not one per member). The first step of an
    epoch makes the tally from where each member's sums stand (zero, or a resumed epoch's)."""
    if tally is None:
        zero = torch.zeros_like(sums[0])
        tally = torch.stack([zero + m.training.loop.sums if i is not None else zero for m, i in zip(members, items)])
        for k, (m, i) in enumerate(zip(members, items)):
            if i is not None:  # (a member that stopped before this epoch has no sums in it)
                m.training.loop.sums = tally[k]
    if all(i is not None for i in items):
        tally += sums
    else:  # a member that stopped keeps its sums
        stepped = torch.tensor([i is not None for i in items], device=sums.device).unsqueeze(1)
        tally += torch.where(stepped, sums, torch.zeros_like(sums))
    return tally
