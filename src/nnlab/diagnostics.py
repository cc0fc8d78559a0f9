"""What the network looks like inside: per-layer gradient norms and, for 2-D data, the decision
boundary. Pure functions of a model and tensors."""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor

# Class colours (RGB 0-255): tab10.
PALETTE = torch.tensor(
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
     [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]],
    dtype=torch.float32,
)  # fmt: skip


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear/Conv layers in forward order, named layer1..layerN (the last one is the output layer)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    return [(f"layer{i}", m) for i, m in enumerate(layers, 1)]


def grad_norms(layers: list[tuple[str, nn.Module]]) -> dict[str, float]:
    """L2 norm of each layer's weight gradient (one host sync for all layers)."""
    named = [(name, m.weight.grad) for name, m in layers if m.weight.grad is not None]
    if not named:
        return {}
    norms = torch.stack([g.detach().float().norm() for _, g in named]).tolist()
    return {f"grad_norm/{name}": v for (name, _), v in zip(named, norms)}


@torch.no_grad()
def decision_boundary(model: nn.Module, predict, x: Tensor, y: Tensor, size: int = 192) -> Tensor:
    """An RGB uint8 image (3, size, size): the predicted class over the plane in a light tint, and
    the points in their true class's colour. x: (N, 2) as the model sees them."""
    was_training = model.training
    model.eval()
    lo, hi = x.min(0).values, x.max(0).values
    pad = (hi - lo) * 0.1 + 1e-3
    lo, hi = lo - pad, hi + pad
    xs = torch.linspace(lo[0].item(), hi[0].item(), size, device=x.device)
    ys = torch.linspace(hi[1].item(), lo[1].item(), size, device=x.device)  # image rows run top-down
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1).reshape(-1, 2)
    pred = predict(model(grid)).cpu() % len(PALETTE)
    image = (PALETTE[pred] * 0.35 + 255 * 0.65).reshape(size, size, 3)
    col = ((x[:, 0] - lo[0]) / (hi[0] - lo[0]) * (size - 1)).round().long().cpu()
    row = ((hi[1] - x[:, 1]) / (hi[1] - lo[1]) * (size - 1)).round().long().cpu()
    colour = PALETTE[y.cpu() % len(PALETTE)] * 0.8
    for dr in (-1, 0, 1):  # 3x3 dots
        for dc in (-1, 0, 1):
            image[(row + dr).clamp(0, size - 1), (col + dc).clamp(0, size - 1)] = colour
    model.train(was_training)
    return image.round().to(torch.uint8).permute(2, 0, 1)
