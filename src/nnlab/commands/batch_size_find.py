"""`nnlab batch-size-find`: the largest batch size that fits in memory for a config, and the learning rate
scaled with it: by the linear scaling rule for SGD (Goyal et al. 2017: k times the batch, k times the rate,
with a warm-up), by the square-root rule for adaptive optimizers (Adam, RMSprop, ...: sqrt(k) times the rate),
then checked: a short trial at that batch and rate must train, else the rate is halved until one does, and
once more for a margin (a rate at the edge for one seed diverges for others).

The batch size doubles from batch_size_find.start (default: trainer.batch_size) until a training step no
longer fits, or the training set is used up. On CUDA a step fits when it runs without an out-of-memory
error and its peak allocation stays within batch_size_find.max_memory_mb (when set). On a CPU nothing
runs out of memory cleanly (the machine swaps, then the kernel kills the process), so the step's memory is
measured instead: the parameters, their gradients and the optimizer state, plus every tensor the forward
pass saves for the backward pass (counted by torch.autograd.graph.saved_tensors_hooks), within the bound
(default: a quarter of the machine's memory).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class Search:
    sizes: list[int] = field(default_factory=list)
    memory_mb: list[float] = field(default_factory=list)
    largest: int | None = None
    stopped_by: str = ""  # "memory" | "data" | "max_batch"


def step_memory_mb(exp, batch: int, scaler) -> float:
    """One training step at this batch size; its memory in MiB (see the module docstring)."""
    from nnlab.training.steps import train_step

    x, y = exp.data.train.x[:batch].clone(), exp.data.train.y[:batch].clone()  # a batch of its own, as in training
    if exp.device.type == "cuda":
        torch.cuda.synchronize(exp.device)
        torch.cuda.reset_peak_memory_stats(exp.device)
        train_step(exp, x, y, scaler)
        torch.cuda.synchronize(exp.device)
        return torch.cuda.max_memory_allocated(exp.device) / 2**20
    saved: dict[tuple, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        saved[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()  # a storage counts once
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        train_step(exp, x, y, scaler)
    params = sum(p.numel() * p.element_size() for p in exp.model.parameters())
    state = sum(
        v.numel() * v.element_size() for s in exp.optimizer.state.values() for v in s.values() if torch.is_tensor(v)
    )
    return (
        2 * params + state + sum(saved.values())
    ) / 2**20  # weights + grads + optimizer state + saved (the batch too)


def search(exp, start: int, max_memory_mb: float | None, max_batch: int | None) -> Search:
    scaler = torch.amp.GradScaler(exp.device.type, enabled=exp.trainer.precision == "fp16")
    limit = min(len(exp.data.train), max_batch or len(exp.data.train))
    result, batch = Search(), start
    exp.model.train()
    while True:
        try:
            mb = step_memory_mb(exp, batch, scaler)
        except torch.OutOfMemoryError:
            result.stopped_by = "memory"
            torch.cuda.empty_cache()
            break
        if max_memory_mb is not None and mb > max_memory_mb:
            result.sizes.append(batch)
            result.memory_mb.append(mb)
            result.stopped_by = "memory"
            break
        result.sizes.append(batch)
        result.memory_mb.append(mb)
        result.largest = batch
        if batch >= limit:
            result.stopped_by = "data" if limit == len(exp.data.train) else "max_batch"
            break
        batch = min(2 * batch, limit)
    return result


def trial(
    cfg, batch: int, lr: float, cpu_share: int | None = None, min_steps: int = 30, max_steps: int = 200
) -> tuple[bool, float, float]:
    """Whether the suggested command trains: a few epochs (at least `min_steps`, at most `max_steps` steps) at
    this batch size and rate under its one-epoch warm-up and cosine decay, from the config's own start. It
    trains where every loss is finite, no ten-step mean passes alarms.divergence_factor times the first loss
    (the run's own divergence alarm), and the last ten average below the first ten. Returns (it trains, the first ten steps' mean loss, the last ten's)."""

    from omegaconf import OmegaConf, open_dict

    from nnlab.training.setup import setup
    from nnlab.training.steps import train_step

    c = copy.deepcopy(cfg)
    with open_dict(c):
        c.trainer.batch_size, c.optimizer.lr = batch, lr
        c.schedule = OmegaConf.create(
            {"_target_": "nnlab.engine.schedules.warmup_cosine", "_partial_": True, "warmup_epochs": 1, "min_lr": 0.0}
        )
        c.alarms.enabled, c.diagnostics.every = False, 0
    probe = setup(c, cpu_share)
    per_epoch = max(1, probe.steps_per_epoch)
    with open_dict(c):
        c.trainer.epochs = max(3, math.ceil(min_steps / per_epoch))
    exp = setup(c, cpu_share)
    steps = min(max_steps, c.trainer.epochs * per_epoch)
    scaler = torch.amp.GradScaler(exp.device.type, enabled=exp.trainer.precision == "fp16")
    g = torch.Generator().manual_seed(c.trainer.seed)
    x, y = exp.data.train.x, exp.data.train.y
    exp.model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=g)[:batch].to(x.device)
        loss = float(train_step(exp, x[idx], y[idx], scaler)[1].detach())
        exp.scheduler.step()
        losses.append(loss)
        window = losses[-10:]  # as a run's divergence alarm sees the loss: its mean over log_every-like windows
        if not math.isfinite(loss) or sum(window) / len(window) > cfg.alarms.divergence_factor * losses[0]:
            return False, losses[0], loss
    k = min(10, max(1, len(losses) // 3))
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return last < first, first, last


def find_batch_size(cfg, run_dir, cpu_share: int | None = None) -> int | None:
    """The `nnlab batch-size-find` job: the search on the composed config, a table, batch_size_find.json."""

    from rich.table import Table

    from nnlab.training.setup import setup
    from nnlab.views.console import console

    f = cfg.batch_size_find
    exp = setup(cfg, cpu_share)
    bound = f.max_memory_mb
    if exp.device.type != "cuda" and bound is None:  # a quarter of this machine's memory
        bound = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4 / 2**20
    start = f.start or exp.trainer.batch_size  # a number (trainer.batch_size=full: the training split's size)
    result = search(exp, start, bound, f.max_batch)
    base_lr = cfg.optimizer.lr
    adaptive = not str(cfg.optimizer._target_).endswith("SGD")  # Adam, RMSprop, Adagrad, ...: per-weight step sizes
    rule = "square-root scaling rule (adaptive optimizers: Malladi et al. 2022)" if adaptive else "linear scaling rule"

    def scaled(size: int) -> float:
        k = size / exp.trainer.batch_size
        return base_lr * (math.sqrt(k) if adaptive else k)

    table = Table(
        title=f"batch-size search on {exp.device} (bound: {f'{bound:.0f} MiB' if bound else 'the device memory'})"
    )
    for col in ("batch size", "memory MiB", "fits", f"lr by the {'square-root' if adaptive else 'linear'} rule"):
        table.add_column(col, justify="right")
    for size, mb in zip(result.sizes, result.memory_mb):
        fits = result.largest is not None and size <= result.largest
        table.add_row(str(size), f"{mb:.1f}", "yes" if fits else "no", f"{scaled(size):.3g}")
    console.print(table)
    out = {
        **result.__dict__,
        "base_batch_size": exp.trainer.batch_size,
        "base_lr": base_lr,
        "device": str(exp.device),
        "max_memory_mb": bound,
    }
    if result.largest is None:
        console.print(f"even batch size {start} does not fit: lower batch_size_find.start or raise the bound")
    else:
        linear = scaled(result.largest)
        out["rule"] = "sqrt" if adaptive else "linear"
        why = {
            "memory": "the next doubling does not fit",
            "data": "the whole training set fits in one batch",
            "max_batch": "batch_size_find.max_batch",
        }[result.stopped_by]
        console.print(
            f"largest batch size: [bold]{result.largest}[/] ({why}); the {rule} from "
            f"trainer.batch_size={cfg.trainer.batch_size}, optimizer.lr={base_lr:g} gives optimizer.lr={linear:.3g}.",
            soft_wrap=True,
        )
        lr, tried = linear, []
        for _ in range(8):  # the rule is an upper bound: halve the rate until a short trial trains
            trains, first, last = trial(cfg, result.largest, lr, cpu_share)
            tried.append({"lr": lr, "trains": trains, "first_loss": first, "last_loss": last})
            if trains or lr <= base_lr:
                break
            lr = max(base_lr, lr / 2)
        out["tried"] = tried
        if tried[-1]["trains"]:
            found = lr
            lr = (
                lr if lr == linear else max(base_lr, lr / 2)
            )  # found by halving: at the edge for this seed, so once more
            out["suggested_lr"] = lr
            checked = f"checked: {len(tried)} short trial{'s' if len(tried) > 1 else ''}, the last trains (loss {first:.3g} -> {last:.3g})"
            halved = (
                ""
                if lr == linear
                else (
                    f"; the rule's {linear:.3g} diverged or stalled, {found:.3g} trained, "
                    f"and half of it leaves a margin for other seeds"
                )
            )
            console.print(
                f"  nnlab train trainer.batch_size={result.largest} optimizer.lr={lr:.3g} schedule=warmup_cosine",
                soft_wrap=True,
            )
            console.print(f"  ({checked}{halved}; large batches want the warm-up)", soft_wrap=True)
        else:
            console.print(
                f"  no rate from {linear:.3g} down to {lr:.3g} trained in a short trial at trainer.batch_size={result.largest}: "
                f"keep trainer.batch_size={cfg.trainer.batch_size}, or find a rate for the larger batch: "
                f"nnlab lr-find trainer.batch_size={result.largest}",
                soft_wrap=True,
            )
    from nnlab.run_files.folder import write_file

    write_file(Path(run_dir, "batch_size_find.json"), json.dumps(out, indent=2) + "\n")
    return result.largest
