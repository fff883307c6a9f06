"""Inception-ResNet-v2 (Szegedy et al. 2017), full size, 299x299 input.

The block layout and widths follow the widely used reimplementation (Cadene's / timm's
``inception_resnet_v2``): stem, Mixed_5b, 10 x Block35 (scale 0.17), Mixed_6a,
20 x Block17 (scale 0.10), Mixed_7a, 9 x Block8 (scale 0.20) and a final Block8 without
ReLU, a 1x1 conv to 1536 channels, global pool and classifier: 55,843,464 parameters at
1000 classes. Residual scaling is a multiplication by a constant, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeweave.models._common import ConvBNAct


def _conv(cin: int, cout: int, kernel, stride: int = 1, padding=0) -> ConvBNAct:
    return ConvBNAct(cin, cout, kernel, stride, padding, eps=1e-3)


class Mixed5b(nn.Module):
    """35x35 grid: 192 -> 320 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(192, 96, 1)
        self.branch1 = nn.Sequential(_conv(192, 48, 1), _conv(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(_conv(192, 64, 1), _conv(64, 96, 3, padding=1),
                                     _conv(96, 96, 3, padding=1))
        self.branch3 = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                                     _conv(192, 64, 1))

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class Block35(nn.Module):
    """Inception-ResNet-A on the 35x35 grid, 320 channels."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = _conv(320, 32, 1)
        self.branch1 = nn.Sequential(_conv(320, 32, 1), _conv(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(_conv(320, 32, 1), _conv(32, 48, 3, padding=1),
                                     _conv(48, 64, 3, padding=1))
        self.conv2d = nn.Conv2d(128, 320, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)
        return self.relu(self.conv2d(out) * self.scale + x)


class Mixed6a(nn.Module):
    """Reduction-A: 35x35x320 -> 17x17x1088."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _conv(320, 384, 3, 2)
        self.branch1 = nn.Sequential(_conv(320, 256, 1), _conv(256, 256, 3, padding=1),
                                     _conv(256, 384, 3, 2))
        self.branch2 = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class Block17(nn.Module):
    """Inception-ResNet-B on the 17x17 grid, 1088 channels, factorised 7x7."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = _conv(1088, 192, 1)
        self.branch1 = nn.Sequential(_conv(1088, 128, 1), _conv(128, 160, (1, 7), padding=(0, 3)),
                                     _conv(160, 192, (7, 1), padding=(3, 0)))
        self.conv2d = nn.Conv2d(384, 1088, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = torch.cat([self.branch0(x), self.branch1(x)], 1)
        return self.relu(self.conv2d(out) * self.scale + x)


class Mixed7a(nn.Module):
    """Reduction-B: 17x17x1088 -> 8x8x2080."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(_conv(1088, 256, 1), _conv(256, 384, 3, 2))
        self.branch1 = nn.Sequential(_conv(1088, 256, 1), _conv(256, 288, 3, 2))
        self.branch2 = nn.Sequential(_conv(1088, 256, 1), _conv(256, 288, 3, padding=1),
                                     _conv(288, 320, 3, 2))
        self.branch3 = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class Block8(nn.Module):
    """Inception-ResNet-C on the 8x8 grid, 2080 channels, factorised 3x3."""

    def __init__(self, scale: float, relu: bool = True) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = _conv(2080, 192, 1)
        self.branch1 = nn.Sequential(_conv(2080, 192, 1), _conv(192, 224, (1, 3), padding=(0, 1)),
                                     _conv(224, 256, (3, 1), padding=(1, 0)))
        self.conv2d = nn.Conv2d(448, 2080, 1)
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x):
        out = torch.cat([self.branch0(x), self.branch1(x)], 1)
        return self.relu(self.conv2d(out) * self.scale + x)


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 classifier."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv(3, 32, 3, 2), _conv(32, 32, 3), _conv(32, 64, 3, padding=1), nn.MaxPool2d(3, 2),
            _conv(64, 80, 1), _conv(80, 192, 3), nn.MaxPool2d(3, 2),
        )
        self.mixed_5b = Mixed5b()
        self.repeat = nn.Sequential(*[Block35(0.17) for _ in range(10)])
        self.mixed_6a = Mixed6a()
        self.repeat_1 = nn.Sequential(*[Block17(0.10) for _ in range(20)])
        self.mixed_7a = Mixed7a()
        self.repeat_2 = nn.Sequential(*[Block8(0.20) for _ in range(9)])
        self.block8 = Block8(1.0, relu=False)
        self.conv2d_7b = _conv(2080, 1536, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classif = nn.Linear(1536, num_classes)

    def forward(self, x):
        x = self.repeat(self.mixed_5b(self.stem(x)))
        x = self.repeat_1(self.mixed_6a(x))
        x = self.block8(self.repeat_2(self.mixed_7a(x)))
        return self.classif(self.avgpool(self.conv2d_7b(x)).flatten(1))
