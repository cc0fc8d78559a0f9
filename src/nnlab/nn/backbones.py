"""torchvision backbones as nnlab models: the network without its ImageNet classifier, then a new `head`
for this task's classes (named like the MLP's and CNN's output layer, so transfer and diagnostics treat
it the same way)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn


class ResNet18(nn.Module):
    """torchvision's resnet18 (11M parameters). `pretrained`: its ImageNet weights, downloaded once by
    torchvision into $TORCH_HOME/hub/checkpoints (~45 MB); a clear error when they cannot be had.
    `small_input` (from scratch only): a 3x3 stride-1 first convolution and no max-pool, the usual change
    for 32x32 images (CIFAR-10), which the ImageNet stem would shrink to 1x1 by the last stage. The
    network keeps its own ReLUs and batch norms: the activation group does not apply to it."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_outputs: int,
        activation: Callable | None = None,
        pretrained: bool = False,
        small_input: bool = True,
    ):
        super().__init__()
        from torchvision.models import ResNet18_Weights, resnet18

        self.has_own_init = True  # torchvision's init or the pretrained weights: nnlab's init group is skipped
        try:
            net = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1 if pretrained else None)
        except Exception as e:  # offline, a proxy, a damaged cache file
            from nnlab.errors import ConfigError

            raise ConfigError(
                f"model=resnet18 with model.pretrained=true needs torchvision's ImageNet weights "
                f"({ResNet18_Weights.IMAGENET1K_V1.url}), which could not be fetched ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}). Download that file once into "
                "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints), or train from scratch "
                "with model.pretrained=false."
            ) from None
        channels = in_shape[0]
        if small_input and not pretrained:
            net.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif channels != 3:  # grey images: one input channel, the pretrained filters summed over RGB
            conv = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
            conv.weight.data.copy_(net.conv1.weight.data.sum(1, keepdim=True).expand_as(conv.weight) / channels)
            net.conv1 = conv
        net.fc = nn.Identity()
        self.backbone = net
        self.head = nn.Linear(512, num_outputs)

    def forward(self, x):
        return self.head(self.backbone(x))
