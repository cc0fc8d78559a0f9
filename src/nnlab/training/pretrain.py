"""Greedy layer-wise pretraining of an MLP's hidden layers (notes 004), run before the usual end-to-end
training, which is then the fine-tuning of every layer (`pretrain.method` in conf/train.yaml).

supervised:  for k = 1..L, train hidden layer k and an output layer on the labels, layers 1..k-1 fixed
             (a temporary output layer per stage; the last stage trains the network's own head).
autoencoder: for k = 1..L, train hidden layer k as the encoder of an autoencoder (with a linear decoder)
             that reconstructs what layer k-1 outputs (the inputs, for k = 1), without labels, layers
             1..k-1 fixed; then the head alone on the labels, every hidden layer fixed. The reconstruction
             loss is the MSE against the standardized target: the fraction of its variance unexplained.

Fixed layers run in eval mode under no_grad, so their outputs are computed once per stage for the whole
training split; each stage trains for `pretrain.epochs` epochs with a fresh optimizer of the run's kind
(`optimizer` group). Augmentation and input noise are for the end-to-end training only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.nn import eval_mode


@torch.no_grad()
def _features(blocks: list[nn.Module], x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    """The output of the fixed layers `blocks` for every example (eval mode)."""
    for b in blocks:
        b.eval()
    out = []
    for start in range(0, len(x), batch):
        h = x[start : start + batch]
        for b in blocks:
            h = b(h)
        out.append(h)
    return torch.cat(out)


def _train(
    params: list[nn.Parameter],
    forward: Callable,
    loss_fn: Callable,
    x,
    y,
    epochs: int,
    batch_size: int,
    make_optimizer: Callable,
    generator: torch.Generator,
) -> list[float]:
    """Plain minibatch training of `params` (the only ones in the optimizer); the mean loss per epoch."""
    optimizer = make_optimizer(params)
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=generator).to(x.device)
        total = torch.zeros((), device=x.device)
        for start in range(0, len(x), batch_size):
            idx = perm[start : start + batch_size]
            loss = loss_fn(forward(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(idx)
        losses.append(total.item() / len(x))
    return losses


def pretrain(
    model: nn.Module,
    method: str,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: nn.Module,
    epochs: int,
    batch_size: int,
    make_optimizer: Callable,
    seed: int,
    log: Callable[[str, list[float]], None],
    unlabeled: torch.Tensor | None = None,
) -> list[dict]:
    """Pretrain `model` (an nnlab MLP: flatten, hidden blocks, head) in place on the training inputs x
    (and labels y, for the supervised parts). `unlabeled`: more inputs, without labels, that the
    autoencoders learn from too (the head only from the labelled x). `log(stage, losses)` receives each
    stage's per-epoch losses. Returns the stages, in order, with their final loss."""
    blocks = list(model.hidden)
    g = torch.Generator().manual_seed(seed)
    x = model.flatten(x)
    inputs = x if unlabeled is None or method != "autoencoder" else torch.cat([x, model.flatten(unlabeled)])
    stages = []

    def stage(name: str, params, forward, loss, inputs, targets) -> None:
        losses = _train(list(params), forward, loss, inputs, targets, epochs, batch_size, make_optimizer, g)
        log(name, losses)
        stages.append({"stage": name, "loss": losses[-1]})

    for k, block in enumerate(blocks, start=1):
        # what layer k sees, from the layers fixed before it (an autoencoder: of the unlabeled examples too)
        h = _features(blocks[: k - 1], x if method == "supervised" else inputs)
        block.train()
        width = _width(block, h)
        if method == "supervised":
            head = model.head if k == len(blocks) else nn.Linear(width, model.head.out_features).to(x.device)
            stage(
                f"layer{k}",
                [*block.parameters(), *head.parameters()],
                lambda v, b=block, o=head: o(b(v)),
                loss_fn,
                h,
                y,
            )
        else:  # the reconstruction target is standardized per feature: the loss is the fraction of variance
            # left unexplained (1 for a constant output), so the features of a deep layer cannot shrink to a constant
            target = (h - h.mean(0)) / h.std(0).clamp_min(1e-6)
            decoder = nn.Linear(width, h.shape[1]).to(x.device)
            stage(
                f"layer{k}",
                [*block.parameters(), *decoder.parameters()],
                lambda v, b=block, d=decoder: d(b(v)),
                F.mse_loss,
                h,
                target,
            )
    if method == "autoencoder":  # a supervised head on the fixed, pretrained features
        stage("head", model.head.parameters(), model.head, loss_fn, _features(blocks, x), y)
    model.train()
    return stages


@torch.no_grad()
def _width(block: nn.Module, h: torch.Tensor) -> int:
    """The number of units a hidden block outputs (maxout: fewer than its linear layer's outputs)."""
    with eval_mode(block):
        return block(h[:2]).shape[1]


def greedy(exp, tracker) -> list[dict]:
    """pretrain.method (supervised | autoencoder) on the training split (the autoencoders also on the
    pretrain.unlabeled examples after data.subset), before the end-to-end training; each stage's loss per
    epoch goes to TensorBoard as pretrain/STAGE_loss."""
    from nnlab.nn import bare
    from nnlab.views.console import console

    p, t, epoch = exp.pretrain, exp.trainer, [0]

    def log(stage: str, losses: list[float]) -> None:
        for value in losses:
            epoch[0] += 1
            tracker.scalars(epoch[0], {f"pretrain/{stage}_loss": value})
        console.print(
            f"pretrain ({p.method}) {stage}: loss {losses[0]:.4f} -> {losses[-1]:.4f} in {len(losses)} epochs"
        )

    return pretrain(
        bare(exp.model),
        p.method,
        exp.data.train.x[:],
        exp.data.train.y,
        exp.loss_fn,
        p.epochs,
        t.batch_size,
        exp.make_optimizer,
        t.seed,
        log,
        None if exp.data.unlabeled is None else exp.data.unlabeled[:],
    )
