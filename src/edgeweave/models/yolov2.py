"""YOLOv2 (Redmon and Farhadi 2017) as in darknet's ``yolo.cfg`` that DeepThings distributes.

Darknet-19 backbone and detection head at 608x608 input, 80 classes and 5 anchors:
every convolution is conv (no bias) + batch norm + leaky ReLU (0.1) except the last
1x1 detection conv (bias, linear). The passthrough route takes layer 16's 26x26x512
output (38x38 at 608 input), squeezes it to 64 channels, reorganises 2x2 blocks into
channels (space-to-depth) and concatenates it with the 19x19x1024 map.
The output is the raw 425-channel detection map (5 x (80 + 5)); the region layer's
decoding is post-processing and left out.

``yolov2_16`` is the first 16 layers (12 convolutions, 4 max pools), the part DeepThings
partitions into fused tiles; it outputs the 38x38x256 map of layer 15.
With its batch-norm running statistics (20,672 numbers) the full model holds the
50,983,561 numbers of darknet's ``yolov2.weights``; its parameters number 50,962,889.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeweave.models._common import ConvBNAct

# darknet yolo.cfg layers 0-24: (filters, size) for a conv, "M" for a 2x2/2 max pool
DARKNET19 = (
    (32, 3), "M", (64, 3), "M", (128, 3), (64, 1), (128, 3), "M", (256, 3), (128, 1), (256, 3),
    "M", (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), "M", (1024, 3), (512, 1), (1024, 3),
    (512, 1), (1024, 3), (1024, 3), (1024, 3),
)
PASSTHROUGH_LAYER = 16  # the route layer 25 reads layer 16's output


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.1)


def darknet_layers(config, in_channels: int = 3) -> nn.Sequential:
    """Build darknet layers from a (filters, size) / "M" list."""
    layers: list[nn.Module] = []
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            filters, size = item
            layers.append(ConvBNAct(in_channels, filters, size, act=_leaky))
            in_channels = filters
    return nn.Sequential(*layers)


class YOLOv2(nn.Module):
    """Darknet-19 backbone with the passthrough route and the detection head."""

    def __init__(self, num_classes: int = 80, num_anchors: int = 5) -> None:
        super().__init__()
        self.backbone = darknet_layers(DARKNET19[: PASSTHROUGH_LAYER + 1])
        self.backbone2 = darknet_layers(DARKNET19[PASSTHROUGH_LAYER + 1 :], in_channels=512)
        self.route = ConvBNAct(512, 64, 1, act=_leaky)
        self.head = ConvBNAct(1024 + 4 * 64, 1024, 3, act=_leaky)
        self.detect = nn.Conv2d(1024, num_anchors * (num_classes + 5), 1)

    def forward(self, x):
        fine = self.backbone(x)
        coarse = self.backbone2(fine)
        passthrough = F.pixel_unshuffle(self.route(fine), 2)
        return self.detect(self.head(torch.cat([passthrough, coarse], 1)))


def yolov2_16() -> nn.Sequential:
    """The first 16 darknet layers of YOLOv2 (12 convolutions and 4 max pools)."""
    return darknet_layers(DARKNET19[:16])
