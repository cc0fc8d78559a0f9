"""Transfer learning: start a model from another run's weights (the `transfer:` settings in
conf/train.yaml: transfer.init_from, transfer.mode, transfer.reused_lr_factor).

Every layer whose parameter names and shapes match is copied, except the output layer (`head`), which
starts afresh for the new task. `transfer.mode` says what happens to the copied layers:

    fine_tune           all layers train; the copied ones at optimizer.lr * transfer.reused_lr_factor
                        (discriminative rates: the new head learns fast, the reused features slowly)
    feature_extraction  the copied layers are frozen; only the new ones train
    freeze_then_fine_tune  the copied layers are frozen for transfer.frozen_epochs while the new head
                        learns, then fine-tune at optimizer.lr * transfer.reused_lr_factor (note 004: "not
                        training the weights initially, but later fine tuning all weights with a small
                        learning rate"); one run, so the head trained frozen goes on training
    none                ignore init_from: train from scratch (the baseline of a transfer sweep)
"""

from __future__ import annotations

import torch
from torch import nn


def load_matching(model: nn.Module, source: str) -> set[str]:
    """Copy the source's tensors into `model` where name and shape match (the head excluded); return
    the names of the parameters copied."""
    from nnlab.errors import ConfigError
    from nnlab.run_files import checkpoint

    path = checkpoint.of_run(source)
    theirs = checkpoint.load(path)["model"]
    own = model.state_dict()
    copied = {k for k, v in theirs.items() if k in own and not k.startswith("head.") and own[k].shape == v.shape}
    if not copied:
        raise ConfigError(
            f"transfer.init_from={source}: no layer of {path} matches this model (names and shapes "
            "differ); transfer needs the same architecture below the output layer."
        )
    with torch.no_grad():
        for k in copied:
            own[k].copy_(theirs[k])
    params = {n for n, _ in model.named_parameters()}
    return copied & params


def parameter_groups(model: nn.Module, reused: set[str], mode: str, lr: float, factor: float) -> list[dict]:
    """What the optimizer trains: everything (from scratch); the new layers at lr and the reused ones at
    lr * factor (fine_tune); only the new layers, the reused ones frozen (feature_extraction)."""
    named = list(model.named_parameters())
    new = [p for n, p in named if n not in reused]
    old = [p for n, p in named if n in reused]
    if not reused or mode == "none":
        return [{"params": [p for _, p in named]}]
    if mode == "feature_extraction":
        for p in old:
            p.requires_grad_(False)
        return [{"params": new}]
    return [{"params": new}, {"params": old, "lr": lr * factor}]  # the head's group first: its rate is logged


def prune(model: nn.Module, source: str, amount: float, scope: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Start `model` from every weight of the run `source` (its architecture: the output layer too), then
    set `amount` of the Linear/Conv weights to zero, the smallest in magnitude first, through
    torch.nn.utils.prune: one threshold over all of them (global) or that fraction of each layer (layer).
    Returns each pruned weight with its mask: the training keeps the zeros at zero (update.member_update)."""
    from torch.nn.utils import prune as torch_prune

    from nnlab.errors import ConfigError
    from nnlab.run_files import checkpoint
    from nnlab.training.diagnostics import weight_layers

    path = checkpoint.of_run(source)
    theirs = checkpoint.load(path)["model"]
    try:
        model.load_state_dict(theirs)
    except RuntimeError:
        raise ConfigError(
            f"prune.source={source}: {path} does not fit this model (names or shapes differ); pruning keeps the "
            "run's architecture: give its own settings (nnlab prune RUN does)."
        ) from None
    layers = [(m, "weight") for _, m in weight_layers(model)]
    if scope == "global":
        torch_prune.global_unstructured(layers, pruning_method=torch_prune.L1Unstructured, amount=amount)
    else:
        for m, name in layers:
            torch_prune.l1_unstructured(m, name, amount=amount)
    masks = []
    for m, name in layers:
        mask = m.weight_mask.detach().clone()
        torch_prune.remove(m, name)  # the zeros made permanent: a plain parameter again
        masks.append((m.weight, mask))
    return masks


def freeze(params: list[torch.Tensor], frozen: bool) -> bool:
    """Freeze (or unfreeze) the reused parameters of freeze_then_fine_tune for an epoch: a frozen one gets no
    gradient, so its optimizer skips it. True where this changed them."""
    changed = any(p.requires_grad == frozen for p in params)
    for p in params:
        p.requires_grad_(not frozen)
    return changed
