"""VGG-16, configuration D without batch norm (Simonyan and Zisserman 2015).

138,357,544 parameters at 1000 classes; 224x224 input.
"""

from __future__ import annotations

from torch import nn

VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg_features(config: tuple[int | str, ...], in_channels: int = 3) -> nn.Sequential:
    """3x3 convolutions with ReLU; "M" is a 2x2 max pool."""
    layers: list[nn.Module] = []
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.ReLU()]
            in_channels = int(item)
    return nn.Sequential(*layers)


class VGG16(nn.Module):
    """VGG-16 with the 7x7 adaptive pool and three fully connected layers."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = vgg_features(VGG16_CONFIG)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))
