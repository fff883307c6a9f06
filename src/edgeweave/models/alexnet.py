"""AlexNet (Krizhevsky et al. 2012): the single-tower form torchvision publishes
(61,100,840 parameters at 1000 classes) and the original two-tower form (AlexNet-P,
60,965,224); both take a 224x224 input.
"""

from __future__ import annotations

import torch
from torch import nn


def alexnet_features() -> nn.Sequential:
    """The five convolutional layers with their pools; 3x224x224 in, 256x6x6 out."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, 2),
    )


class AlexNet(nn.Module):
    """AlexNet with the adaptive 6x6 pool and three fully connected layers."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = alexnet_features()
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def _tower_head() -> nn.Sequential:
    """One tower's first two convolutional layers (one GPU's half in the original)."""
    return nn.Sequential(
        nn.Conv2d(3, 48, 11, 4, 2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(48, 128, 5, padding=2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        nn.MaxPool2d(3, 2),
    )


def _tower_tail() -> nn.Sequential:
    """One tower's last three convolutional layers; the first reads both towers."""
    return nn.Sequential(
        nn.Conv2d(256, 192, 3, padding=1), nn.ReLU(),
        nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(),
        nn.Conv2d(192, 128, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, 2),
    )


class AlexNetP(nn.Module):
    """AlexNet as first published: two towers (one per GPU in Krizhevsky et al. 2012, Fig. 2)
    that exchange activations only at the third convolution and at the fully connected
    layers; local response normalisation after the first two convolutions; 224x224 input.

    60,965,224 parameters at 1000 classes — the paper's "60 million". Seed 001's
    "AlexNet-P": a DAG of four multi-path stretches, the towers being the paths.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.heads = nn.ModuleList(_tower_head() for _ in range(2))
        self.tails = nn.ModuleList(_tower_tail() for _ in range(2))
        self.fc6 = nn.ModuleList(nn.Sequential(nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 2048),
                                               nn.ReLU()) for _ in range(2))
        self.fc7 = nn.ModuleList(nn.Sequential(nn.Dropout(0.5), nn.Linear(4096, 2048),
                                               nn.ReLU()) for _ in range(2))
        self.fc8 = nn.Linear(4096, num_classes)

    def forward(self, x):
        both = torch.cat([head(x) for head in self.heads], 1)
        both = torch.cat([tail(both) for tail in self.tails], 1).flatten(1)
        both = torch.cat([fc(both) for fc in self.fc6], 1)
        both = torch.cat([fc(both) for fc in self.fc7], 1)
        return self.fc8(both)
