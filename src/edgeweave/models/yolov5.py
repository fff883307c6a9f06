"""YOLOv5s, release v6.0/v7.0 structure (Ultralytics), 640x640 input, 80 classes.

From ``yolov5s.yaml`` (depth 0.33, width 0.50): a CSP backbone of Conv / C3 blocks and
SPPF, a PANet neck with nearest upsampling and concatenations, and a Detect head of three
1x1 convolutions at strides 8, 16, 32. 7,235,389 parameters. The three raw detection maps
(3 anchors x 85 channels each) are the outputs; box decoding is post-processing.
The graph has no cut point after the P3 tap of the backbone (seed 002's point).
"""

from __future__ import annotations

import torch
from torch import nn

from edgeweave.models._common import ConvBNAct


def _conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, padding=None) -> ConvBNAct:
    return ConvBNAct(cin, cout, kernel, stride, padding, act=nn.SiLU, eps=1e-3)


class Bottleneck(nn.Module):
    """1x1 then 3x3 conv, with a residual add when asked."""

    def __init__(self, channels: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1 = _conv(channels, channels, 1)
        self.cv2 = _conv(channels, channels, 3)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with three convolutions."""

    def __init__(self, cin: int, cout: int, n: int, shortcut: bool = True) -> None:
        super().__init__()
        hidden = cout // 2
        self.cv1 = _conv(cin, hidden)
        self.cv2 = _conv(cin, hidden)
        self.cv3 = _conv(2 * hidden, cout)
        self.m = nn.Sequential(*[Bottleneck(hidden, shortcut) for _ in range(n)])

    def forward(self, x):
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max pools concatenated."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        hidden = cin // 2
        self.cv1 = _conv(cin, hidden)
        self.cv2 = _conv(hidden * 4, cout)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat([x, y1, y2, self.m(y2)], 1))


class YOLOv5s(nn.Module):
    """YOLOv5s: backbone, PANet neck and three detection convolutions."""

    def __init__(self, num_classes: int = 80, num_anchors: int = 3) -> None:
        super().__init__()
        up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
        outputs = num_anchors * (num_classes + 5)
        # backbone, yaml indices 0-9
        self.b0, self.b1, self.b2 = _conv(3, 32, 6, 2, 2), _conv(32, 64, 3, 2), C3(64, 64, 1)
        self.b3, self.b4 = _conv(64, 128, 3, 2), C3(128, 128, 2)
        self.b5, self.b6 = _conv(128, 256, 3, 2), C3(256, 256, 3)
        self.b7, self.b8, self.b9 = _conv(256, 512, 3, 2), C3(512, 512, 1), SPPF(512, 512)
        # neck, yaml indices 10-23
        self.h10, self.h11, self.h13 = _conv(512, 256), up(), C3(512, 256, 1, False)
        self.h14, self.h15, self.h17 = _conv(256, 128), up(), C3(256, 128, 1, False)
        self.h18, self.h20 = _conv(128, 128, 3, 2), C3(256, 256, 1, False)
        self.h21, self.h23 = _conv(256, 256, 3, 2), C3(512, 512, 1, False)
        # Detect, yaml index 24
        self.detect = nn.ModuleList(nn.Conv2d(c, outputs, 1) for c in (128, 256, 512))

    def forward(self, x):
        p3 = self.b4(self.b3(self.b2(self.b1(self.b0(x)))))
        p4 = self.b6(self.b5(p3))
        p5 = self.b9(self.b8(self.b7(p4)))
        h10 = self.h10(p5)
        h14 = self.h14(self.h13(torch.cat([self.h11(h10), p4], 1)))
        out3 = self.h17(torch.cat([self.h15(h14), p3], 1))
        out4 = self.h20(torch.cat([self.h18(out3), h14], 1))
        out5 = self.h23(torch.cat([self.h21(out4), h10], 1))
        return tuple(conv(y) for conv, y in zip(self.detect, (out3, out4, out5)))
