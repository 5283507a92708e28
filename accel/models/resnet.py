"""ResNet with Bottleneck blocks, in torchvision's module layout (v1.5: stride on the 3x3),
written from scratch. BatchNorm statistics are randomised so that BN folding matters."""

from __future__ import annotations

import torch
from torch import nn

from accel.models.common import build_convnet


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand, each conv-BN, plus a shortcut; then ReLU."""

    expansion = 4

    def __init__(self, in_chans: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_chans = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chans, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_chans, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chans)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_chans != out_chans:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_chans),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to x [B, C, H, W]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet classifier: 7x7 stem, max-pool, four Bottleneck stages, avg-pool, fc."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        width: int = 64,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.in_chans = in_chans
        self.conv1 = nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        chans = width
        stages = []
        for i, n_blocks in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Bottleneck(chans, planes, stride))
                chans = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify images x [B, C, H, W] into logits [B, num_classes]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


RESNET_CONFIGS: dict[str, dict[str, object]] = {
    "resnet50": {
        "layers": (3, 4, 6, 3),
        "width": 64,
        "num_classes": 1000,
        "img_size": 224,
    },
    "resnet_small_test": {
        "layers": (1, 1, 1, 1),
        "width": 8,
        "num_classes": 10,
        "img_size": 32,
    },
}
"""Named ResNet configurations (keyword arguments of ResNet)."""


def build_resnet(name: str, seed: int = 0, **overrides: object) -> ResNet:
    """Build the named ResNet (arguments overridable), seeded, random calibrated BN, eval."""
    return build_convnet(ResNet, {**RESNET_CONFIGS[name], **overrides}, seed)
