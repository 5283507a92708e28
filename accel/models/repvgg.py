"""RepVGG in its training-time, multi-branch form (3x3 conv-BN + 1x1 conv-BN + identity BN,
summed, then ReLU): the form a reparameterisation pass merges into one 3x3 conv."""

from __future__ import annotations

import torch
from torch import nn

from accel.models.common import (
    build_convnet,
    conv_bn,
)


class RepVGGBlock(nn.Module):
    """Sum of a 3x3 conv-BN, a 1x1 conv-BN and (if shapes allow) an identity BN, then ReLU."""

    def __init__(
        self, in_chans: int, out_chans: int, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.rbr_dense = conv_bn(
            in_chans, out_chans, 3, stride, padding=1, groups=groups
        )
        self.rbr_1x1 = conv_bn(in_chans, out_chans, 1, stride, padding=0, groups=groups)
        has_identity = in_chans == out_chans and stride == 1
        self.rbr_identity = nn.BatchNorm2d(in_chans) if has_identity else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to x [B, C, H, W]."""
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return self.relu(out)


class RepVGG(nn.Module):
    """RepVGG classifier: stage0 then four stages (first block strided), avg-pool, Linear."""

    def __init__(
        self,
        num_blocks: tuple[int, int, int, int] = (2, 4, 14, 1),
        width_multiplier: tuple[float, float, float, float] = (0.75, 0.75, 0.75, 2.5),
        num_classes: int = 1000,
        groups: int = 1,
        in_chans: int = 3,
        img_size: int = 224,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.in_chans = in_chans
        # The paper makes every other layer (2, 4, ..., 26) group-wise when groups > 1.
        groupwise_layers = set(range(2, 28, 2))
        chans = min(base_width, int(base_width * width_multiplier[0]))
        self.stage0 = RepVGGBlock(in_chans, chans, stride=2)
        layer_idx = 1
        stages = []
        for i, (n_blocks, mult) in enumerate(zip(num_blocks, width_multiplier)):
            planes = int(base_width * 2**i * mult)
            blocks = []
            for j in range(n_blocks):
                g = groups if layer_idx in groupwise_layers else 1
                blocks.append(
                    RepVGGBlock(chans, planes, stride=2 if j == 0 else 1, groups=g)
                )
                chans = planes
                layer_idx += 1
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(chans, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify images x [B, C, H, W] into logits [B, num_classes]."""
        x = self.stage0(x)
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.linear(torch.flatten(self.gap(x), 1))


REPVGG_CONFIGS: dict[str, dict[str, object]] = {
    "repvgg_a0": {
        "num_blocks": (2, 4, 14, 1),
        "width_multiplier": (0.75, 0.75, 0.75, 2.5),
        "img_size": 224,
    },
    "repvgg_small_test": {
        "num_blocks": (1, 2, 2, 1),
        "width_multiplier": (1.0, 1.0, 1.0, 1.0),
        "base_width": 8,
        "num_classes": 10,
        "img_size": 32,
    },
}
"""Named RepVGG configurations (keyword arguments of RepVGG)."""


def build_repvgg(name: str, seed: int = 0, **overrides: object) -> RepVGG:
    """Build the named RepVGG (arguments overridable), seeded, random calibrated BN, eval."""
    return build_convnet(RepVGG, {**REPVGG_CONFIGS[name], **overrides}, seed)
