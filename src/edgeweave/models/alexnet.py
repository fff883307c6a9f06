"""AlexNet, single-tower form (Krizhevsky et al. 2012; the layout torchvision publishes).

61,100,840 parameters at 1000 classes; 224x224 input.
"""

from __future__ import annotations

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
