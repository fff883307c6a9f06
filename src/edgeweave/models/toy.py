"""Small models for tests and examples: a line net and a two-branch (multi-path) net."""

from __future__ import annotations

import torch
from torch import nn


class LineNet(nn.Module):
    """conv-relu-pool twice, then a linear layer: a chain of layers (seed 001's 'line')."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32 * 8 * 8, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.features(x)))


class TwoBranchNet(nn.Module):
    """A stem, two parallel conv paths concatenated, then a head (seed 001's 'multi-path')."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.left = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1))
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, stride=2, padding=1),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.cat([self.left(x), self.right(x)], 1))
