"""A trained run in Python: `nnlab.load_run(path)` gives its model, ready for `model(x)` on raw inputs (the
data set's own form: uint8 images, 2-D points), with the run's preprocessing inside, its config and its
summary.

    import nnlab
    run = nnlab.load_run("outputs/2026-11-24/15-01-02")   # or a checkpoint file: .../checkpoints/last.pt
    labels = run.predict(x)                               # x as the data set gives it: numpy or torch, raw shapes
    probs = run.predict_proba(x)                          # [N, classes]
    run.history["acc/val"]                                # the metrics per epoch, as Keras's History

The checkpoint is read with weights_only=True (no pickled code runs) and the config is validated like every
config nnlab reads from disk. The preprocessing statistics are those of the run's own training split, so
the data set must be at hand (as for `nnlab ensemble`), offline from the run's data.source.root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnlab.nn import bare


class Preprocess(nn.Module):
    """Raw inputs as the run's model saw them in training: floats (uint8 images to [0, 1]), minus the
    training split's mean, over its std; with data.preprocess=pca or whiten, projected on its principal
    components (loader.project)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, projection: tuple | None = None):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())
        self.register_buffer("w", None if projection is None else projection[0].detach().clone())
        self.register_buffer("b", None if projection is None else projection[1].detach().clone())

    def forward(self, x) -> torch.Tensor:
        x = as_batch(torch.as_tensor(x), self.mean).to(self.mean.device)
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        x = (x - self.mean) / self.std
        return x if self.w is None else x.flatten(1) @ self.w - self.b


def as_batch(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Raw inputs in the shapes people hold them, as the batch the model takes (`like`: the training
    statistics, [1, C, 1, 1] for images, [1, F] for points): MNIST's (N, 28, 28) or one (28, 28) image gains its
    channel, channels-last (N, H, W, C) images are turned channels-first, one image (C, H, W) or one point (F,)
    becomes a batch of one, and N values of a one-feature set (N,) a column."""
    if like.dim() == 4:
        c = like.shape[1]
        if x.dim() == 2 and c == 1:
            return x[None, None]
        if x.dim() == 3:
            if x.shape[0] == c and (c != 1 or x.shape[1] == x.shape[2]) and x.shape[-1] != c:
                return x[None]  # one image, channels first
            return x.unsqueeze(1) if c == 1 else x.permute(2, 0, 1)[None] if x.shape[-1] == c else x
        if x.dim() == 4 and x.shape[1] != c and x.shape[-1] == c:
            return x.permute(0, 3, 1, 2)
        return x
    if x.dim() == 1:
        return x[:, None] if like.shape[-1] == 1 else x[None]
    return x


@dataclass
class Run:
    """A loaded run: `model` (Preprocess then the trained network, in eval mode), `config` (the run's
    resolved config), `summary` (summary.json, None for a run that has not finished), where it came from."""

    model: nn.Sequential
    config: Any  # DictConfig
    summary: dict | None
    path: Path
    checkpoint: Path
    loss_fn: nn.Module
    kind: str  # "points" | "images" | "regression"

    def __repr__(self) -> str:
        """One line: where it is from and how it ended (the model and config are attributes, not printed)."""
        s = self.summary or {}
        scores = ", ".join(f"{k}={v:.4f}" for k, v in s.get("metrics", {}).items() if k.endswith("/test"))
        return (
            f"Run({str(self.path)!r}, checkpoint={self.checkpoint.name!r}, kind={self.kind!r}, "
            f"status={s.get('status', 'unfinished')!r}" + (f", {scores}" if scores else "") + ")"
        )

    @torch.no_grad()
    def predict(self, x) -> torch.Tensor:
        """Class indices (classification) or predicted values (regression: one per example where the set has
        one target, else [N, targets]) for raw inputs (a tensor or a numpy array, in the shapes as_batch takes)."""
        out = self.model(x)
        if self.kind == "regression":
            out = self.loss_fn.link(out)  # in the targets' units (a softplus output: positive values)
            return out.squeeze(-1) if out.shape[-1] == 1 else out
        return self.loss_fn.predict(out)

    @torch.no_grad()
    def predict_proba(self, x) -> torch.Tensor:
        """[N, classes]: each class's probability for raw inputs (as predict() takes them); rows sum to one."""
        if self.kind == "regression":
            raise ValueError(f"{self.path} is a regression: it has values (predict), not class probabilities.")
        return self.loss_fn.probabilities(self.model(x))

    @property
    def history(self) -> dict[str, list[float]]:
        """The per-epoch metrics as Keras's History.history holds them: {"epoch": [1, 2, ...], "loss/train":
        [...], "acc/val": [...], ...}, from metrics.jsonl (the epochs of the training that made this run)."""
        from nnlab.run_files.records import read_rows

        rows = [r for r in read_rows(self.path / "metrics.jsonl", having="loss/train") if "epoch" in r]
        by_epoch = {r["epoch"]: r for r in rows}  # a resumed run logs an epoch again: the last one counts
        keys = [k for k in dict.fromkeys(k for r in by_epoch.values() for k in r) if k not in ("step", "epoch")]
        epochs = sorted(by_epoch)
        return {"epoch": epochs, **{k: [by_epoch[e].get(k, float("nan")) for e in epochs] for k in keys}}


def load_run(path: str | Path, which: str = "best", device: str = "cpu") -> Run:
    """The run at `path` (a run directory, or a .pt file in its checkpoints/): its `best` checkpoint
    (else `last`), or `last` with which="last"; weights only. Raises nnlab.errors.ConfigError, with one
    paragraph, for a folder that is not a run or a checkpoint that does not fit its config."""
    from nnlab.run_files.records import read_summary

    run, ckpt, cfg, exp = load_experiment(path, which, device)
    full = nn.Sequential(Preprocess(exp.data.mean, exp.data.std, exp.data.projection), bare(exp.model))
    full = full.to(exp.device).eval()
    summary = read_summary(run)
    return Run(full, cfg, summary, run, ckpt, exp.loss_fn, exp.data.kind)


def load_experiment(path: str | Path, which: str = "best", device: str = "cpu") -> tuple:
    """(run folder, checkpoint, config, setup.Experiment with the checkpoint's weights) of the run at
    `path`, as load_run() reads it (the same errors)."""
    from nnlab.config.validate import load_run_config
    from nnlab.errors import ConfigError
    from nnlab.run_files import checkpoint
    from nnlab.training.setup import setup

    if which not in ("best", "last"):
        raise ConfigError(f"which={which!r}: best or last.")
    given = Path(path).expanduser()
    run = (
        given.parent.parent
        if given.is_file() and given.suffix == ".pt" and given.parent.name == "checkpoints"
        else given
    )
    if not (run / "config.yaml").is_file() or not (run / "checkpoints").is_dir():
        raise ConfigError(
            f"{path} is not an nnlab run folder (RUN, holding config.yaml and checkpoints/) nor a "
            "checkpoint in one (RUN/checkpoints/last.pt)."
        )
    ckpt = given if given.is_file() else checkpoint.of_run(run) if which == "best" else run / "checkpoints" / "last.pt"
    cfg = load_run_config(run, trains=False)
    cfg.trainer.device = device
    exp = setup(cfg, trains=False)  # the run's own model and loss, and its training split's statistics
    try:
        bare(exp.model).load_state_dict(checkpoint.load(ckpt, map_location=exp.device)["model"])
    except (RuntimeError, KeyError) as e:
        raise ConfigError(
            f"{ckpt} does not fit the model of {run}/config.yaml ({str(e).strip().splitlines()[0]})."
        ) from None
    return run, ckpt, cfg, exp
