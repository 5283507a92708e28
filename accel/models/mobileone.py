"""MobileOne (S0-like) in its training-time, over-parameterised form: each block sums k
parallel conv-BN branches, a 1x1 "scale" conv-BN (for 3x3 blocks) and an identity BN."""

from __future__ import annotations

import torch
from torch import nn

from accel.models.common import (
    build_convnet,
    conv_bn,
)


class MobileOneBlock(nn.Module):
    """Sum of k conv-BN branches, a 1x1 scale branch (if kernel > 1) and identity BN; ReLU."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        num_branches: int = 1,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.rbr_conv = nn.ModuleList(
            conv_bn(in_chans, out_chans, kernel_size, stride, padding, groups)
            for _ in range(num_branches)
        )
        self.rbr_scale = (
            conv_bn(in_chans, out_chans, 1, stride, 0, groups)
            if kernel_size > 1
            else None
        )
        has_identity = in_chans == out_chans and stride == 1
        self.rbr_skip = nn.BatchNorm2d(in_chans) if has_identity else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to x [B, C, H, W]."""
        out = self.rbr_conv[0](x)
        for branch in self.rbr_conv[1:]:
            out = out + branch(x)
        if self.rbr_scale is not None:
            out = out + self.rbr_scale(x)
        if self.rbr_skip is not None:
            out = out + self.rbr_skip(x)
        return self.relu(out)


class MobileOne(nn.Module):
    """MobileOne classifier: 3x3 stem, stages of (depthwise 3x3, pointwise 1x1) block pairs."""

    def __init__(
        self,
        num_blocks: tuple[int, int, int, int] = (2, 8, 10, 1),
        widths: tuple[int, int, int, int, int] = (48, 48, 128, 256, 1024),
        num_branches: int = 4,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.in_chans = in_chans
        chans = widths[0]
        self.stage0 = MobileOneBlock(in_chans, chans, 3, stride=2)
        stages = []
        for n_blocks, planes in zip(num_blocks, widths[1:]):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if j == 0 else 1
                blocks.append(
                    MobileOneBlock(chans, chans, 3, stride, chans, num_branches)
                )
                blocks.append(MobileOneBlock(chans, planes, 1, 1, 1, num_branches))
                chans = planes
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(chans, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify images x [B, C, H, W] into logits [B, num_classes]."""
        x = self.stage0(x)
        x = self.stage4(self.stage3(self.stage2(self.stage1(x))))
        return self.linear(torch.flatten(self.gap(x), 1))


MOBILEONE_CONFIGS: dict[str, dict[str, object]] = {
    "mobileone_s0": {
        "num_blocks": (2, 8, 10, 1),
        "widths": (48, 48, 128, 256, 1024),
        "num_branches": 4,
        "img_size": 224,
    },
    "mobileone_small_test": {
        "num_blocks": (1, 2, 1, 1),
        "widths": (8, 8, 16, 32, 64),
        "num_branches": 2,
        "num_classes": 10,
        "img_size": 32,
    },
}
"""Named MobileOne configurations (keyword arguments of MobileOne)."""


def build_mobileone(name: str, seed: int = 0, **overrides: object) -> MobileOne:
    """Build the named MobileOne (arguments overridable), seeded, random calibrated BN, eval."""
    return build_convnet(MobileOne, {**MOBILEONE_CONFIGS[name], **overrides}, seed)
