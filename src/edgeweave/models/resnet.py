"""ResNet-18 and ResNet-50 (He et al. 2016), the layout torchvision publishes.

ResNet-18: basic blocks [2, 2, 2, 2], 11,689,512 parameters.
ResNet-50: bottleneck blocks [3, 4, 6, 3] with the stride on the 3x3 conv, 25,557,032 parameters.
224x224 input, 1000 classes.
"""

from __future__ import annotations

from torch import nn

from edgeweave.models._common import ConvBNAct


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a skip connection."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, width, 3, stride)
        self.conv2 = ConvBNAct(width, width, 3, act=None)
        self.downsample = _shortcut(in_channels, width, stride)
        self.relu = nn.ReLU()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by four, and a skip connection."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, width, 1)
        self.conv2 = ConvBNAct(width, width, 3, stride)
        self.conv3 = ConvBNAct(width, width * 4, 1, act=None)
        self.downsample = _shortcut(in_channels, width * 4, stride)
        self.relu = nn.ReLU()

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return ConvBNAct(in_channels, out_channels, 1, stride, act=None)


class ResNet(nn.Module):
    """Stem, four stages of residual blocks, global average pool, classifier."""

    def __init__(self, block: type[BasicBlock | Bottleneck], depths: tuple[int, ...],
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, 64, 7, 2, 3)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, in_channels = [], 64
        for index, depth in enumerate(depths):
            width = 64 * 2**index
            blocks = []
            for b in range(depth):
                blocks.append(block(in_channels, width, 2 if b == 0 and index > 0 else 1))
                in_channels = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        x = self.maxpool(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18() -> ResNet:
    """ResNet-18."""
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet50() -> ResNet:
    """ResNet-50."""
    return ResNet(Bottleneck, (3, 4, 6, 3))
