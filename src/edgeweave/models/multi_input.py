"""Multi-input models of seed 001's experiments: a Siamese net and a multi-stream net.

Neither has one published reference; both are built from standard parts, documented here:

- ``Siamese``: two 224x224 images through one weight-shared VGG-style branch (VGG-11's
  layout at half width), global average pooling, the two embeddings concatenated and a
  two-layer classifier. The branch runs twice, so its layers appear twice in the graph.
- ``MultiStream``: three 224x224 inputs, each through its own AlexNet convolutional stack,
  globally pooled, concatenated and classified.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeweave.models.alexnet import alexnet_features
from edgeweave.models.vgg import vgg_features

SIAMESE_BRANCH = (32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M")


class Siamese(nn.Module):
    """Two weight-shared conv branches joined by concatenation."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.branch = nn.Sequential(vgg_features(SIAMESE_BRANCH), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, num_classes))

    def forward(self, left, right):
        embeddings = [self.branch(left).flatten(1), self.branch(right).flatten(1)]
        return self.head(torch.cat(embeddings, 1))


class MultiStream(nn.Module):
    """Three independent AlexNet conv streams, one per input, fused at the end."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.streams = nn.ModuleList(alexnet_features() for _ in range(3))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256 * 3, num_classes)

    def forward(self, first, second, third):
        inputs = (first, second, third)
        features = [self.pool(stream(x)).flatten(1) for stream, x in zip(self.streams, inputs)]
        return self.fc(torch.cat(features, 1))
