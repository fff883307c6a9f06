"""One layer of a traced model: what it computes, on what shapes, at what cost.

A ``Layer`` is one torch.fx node that computes a value (placeholders are ``INPUT`` layers;
``get_attr`` nodes are folded into the layers that read them, as parameters). Sizes are in
bytes and FLOPs count a multiply-add as two operations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Shape = tuple[int, ...]


class OpKind(StrEnum):
    """What a layer does, as far as splitting it over regions of its output is concerned."""

    INPUT = "input"  # a model input
    CONV = "conv"  # spatial window over all input channels of its group
    POOL = "pool"  # spatial window, channel by channel (max / avg)
    ADAPTIVE_POOL = "adaptive_pool"  # pool to a fixed output size
    LINEAR = "linear"  # needs the whole last dimension of its input
    ELEMENTWISE = "elementwise"  # output element i reads input element i (with broadcasting)
    CONCAT = "concat"  # stacks inputs along attrs["dim"]
    UPSAMPLE = "upsample"  # spatial scale by attrs["scale"], attrs["mode"]
    RESHAPE = "reshape"  # same elements, new shape (flatten / view / reshape)
    OTHER = "other"  # anything else: treated as needing its whole inputs


@dataclass(frozen=True, slots=True)
class Geometry:
    """Sliding-window parameters of a convolution or pool, one entry per spatial dimension."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1
    ceil_mode: bool = False

    def __repr__(self) -> str:
        def text(values: tuple[int, ...]) -> str:
            return "x".join(map(str, values))

        extras = (f" g{self.groups}" if self.groups != 1 else "") + (
            " ceil" if self.ceil_mode else ""
        )
        return (f"k{text(self.kernel)} s{text(self.stride)} p{text(self.padding)}"
                f" d{text(self.dilation)}{extras}")


@dataclass(frozen=True, slots=True)
class Layer:
    """A node of the ``LayerGraph``.

    ``inputs`` are the producing layers in argument order; ``params`` the qualified names
    of the parameters and buffers it reads (shared weights appear in several layers, and a
    device holding several of them stores them once). ``output_shape`` is ``None`` when the
    layer returns something other than one tensor (a tuple from ``chunk``, say).
    """

    name: str
    kind: OpKind
    target: str
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape | None
    dtype: str
    flops: int
    param_bytes: int
    output_bytes: int
    params: tuple[str, ...] = ()
    geometry: Geometry | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def itemsize(self) -> int:
        """Bytes per element of the output."""
        return _ITEMSIZE.get(self.dtype, 4)

    @property
    def input_bytes(self) -> int:
        """Bytes of all inputs, estimated from the output's element size."""
        return sum(math.prod(shape) * self.itemsize for shape in self.input_shapes)

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.output_shape)) if self.output_shape else "?"
        geometry = f" {self.geometry!r}" if self.geometry else ""
        return f"<{self.kind} {self.name} -> {shape}{geometry} {self.flops / 1e6:.2f} MFLOP>"


_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4,
             "int8": 1, "uint8": 1, "bool": 1}
