"""GoogLeNet / Inception v1 (Szegedy et al. 2015) without the auxiliary heads.

Follows the layout torchvision publishes, batch norm after every convolution and, as there,
a 3x3 convolution in the branch the paper draws as 5x5; this gives the published
6,624,904 parameters at 1000 classes. 224x224 input.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeweave.models._common import ConvBNAct


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> ConvBNAct:
    return ConvBNAct(cin, cout, kernel, stride, eps=1e-3)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int):
        super().__init__()
        self.branch1 = _conv(cin, c1, 1)
        self.branch2 = nn.Sequential(_conv(cin, c3r, 1), _conv(c3r, c3, 3))
        self.branch3 = nn.Sequential(_conv(cin, c5r, 1), _conv(c5r, c5, 3))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), _conv(cin, pool, 1))

    def forward(self, x):
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], 1)


class GoogLeNet(nn.Module):
    """GoogLeNet classifier (inference form: no auxiliary classifiers)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        pool = lambda k: nn.MaxPool2d(k, 2, ceil_mode=True)  # noqa: E731
        self.stem = nn.Sequential(_conv(3, 64, 7, 2), pool(3), _conv(64, 64, 1),
                                  _conv(64, 192, 3), pool(3))
        self.inception3 = nn.Sequential(Inception(192, 64, 96, 128, 16, 32, 32),
                                        Inception(256, 128, 128, 192, 32, 96, 64), pool(3))
        self.inception4 = nn.Sequential(Inception(480, 192, 96, 208, 16, 48, 64),
                                        Inception(512, 160, 112, 224, 24, 64, 64),
                                        Inception(512, 128, 128, 256, 24, 64, 64),
                                        Inception(512, 112, 144, 288, 32, 64, 64),
                                        Inception(528, 256, 160, 320, 32, 128, 128), pool(2))
        self.inception5 = nn.Sequential(Inception(832, 256, 160, 320, 32, 128, 128),
                                        Inception(832, 384, 192, 384, 48, 128, 128))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.inception5(self.inception4(self.inception3(self.stem(x))))
        return self.fc(self.dropout(self.avgpool(x).flatten(1)))
