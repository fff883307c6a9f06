"""Regions of tensors and the receptive-field arithmetic every planner relies on.

A ``Region`` is a box: one half-open interval per dimension of a layer's output. The
whole tensor, a channel range, a row band and a 2-D tile are all boxes. ``input_regions``
answers, for one layer, which region of each input an output region reads — halos of
convolutions and pools, group structure, broadcasting, concatenation offsets, upsampling,
adaptive pooling. ``required_regions`` carries that backwards through several layers (a
fused tile stack, a sub-graph on one device).

Windows of convolutions and pools are returned unclipped: a start below 0 or a stop past
the end is the zero (or -inf) padding the op adds at the border, which an executor of a
partial region must add itself. ``Region.clip`` gives the part that exists.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from edgeweave.graph import Layer, LayerGraph, OpKind

Shape = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Region:
    """A box ``[start, stop)`` per dimension; its text form is ``[0:1,0:64,8:16,0:56]``."""

    bounds: tuple[tuple[int, int], ...]

    @classmethod
    def full(cls, shape: Sequence[int] | None) -> Region:
        """The whole tensor of ``shape``; ``None`` (a layer whose value is not one tensor,
        a tuple from ``chunk``, say) gives ``Region(())``, the whole value."""
        return cls(tuple((0, int(size)) for size in shape or ()))

    @classmethod
    def parse(cls, text: str) -> Region:
        """The region written as ``[a:b,c:d,…]`` (its ``repr``)."""
        match = re.fullmatch(r"\[(.*)\]", text.replace(" ", ""))
        if match is None:
            raise ValueError(f"Not a region: '{text}'.")
        parts = [p for p in match.group(1).split(",") if p]
        return cls(tuple((int(a), int(b)) for a, b in (p.split(":") for p in parts)))

    def __repr__(self) -> str:
        return "[" + ",".join(f"{a}:{b}" for a, b in self.bounds) + "]"

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.bounds)

    @property
    def shape(self) -> Shape:
        """Extent in each dimension (0 where empty)."""
        return tuple(max(0, b - a) for a, b in self.bounds)

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def is_empty(self) -> bool:
        """True when some dimension has no extent."""
        return any(b <= a for a, b in self.bounds)

    def along(self, dim: int, start: int, stop: int) -> Region:
        """This region with dimension ``dim`` replaced by ``[start, stop)``."""
        bounds = list(self.bounds)
        bounds[dim] = (start, stop)
        return Region(tuple(bounds))

    def clip(self, shape: Sequence[int]) -> Region:
        """The part inside a tensor of ``shape``."""
        return Region(tuple((min(max(a, 0), n), min(max(b, 0), n))
                            for (a, b), n in zip(self.bounds, shape, strict=True)))

    def intersect(self, other: Region) -> Region:
        """The common part (possibly empty)."""
        return Region(tuple((max(a, c), max(max(a, c), min(b, d)))
                            for (a, b), (c, d) in zip(self.bounds, other.bounds, strict=True)))

    def hull(self, other: Region) -> Region:
        """The smallest box holding both; an empty region adds nothing."""
        if self.is_empty:
            return other
        if other.is_empty:
            return self
        return Region(tuple((min(a, c), max(b, d))
                            for (a, b), (c, d) in zip(self.bounds, other.bounds, strict=True)))

    def contains(self, other: Region) -> bool:
        """True when ``other`` lies inside this region (an empty one always does)."""
        return other.is_empty or all(a <= c and d <= b for (a, b), (c, d)
                                     in zip(self.bounds, other.bounds, strict=True))

    def slices(self) -> tuple[slice, ...]:
        """Index a tensor with these to take the region (after ``clip``)."""
        return tuple(slice(a, b) for a, b in self.bounds)


def input_regions(layer: Layer, region: Region) -> tuple[Region, ...]:
    """The region of each input of ``layer`` (in ``layer.inputs`` order) that ``region`` of
    its output reads. Windows are unclipped; empty inputs regions mean "not read"."""
    shapes = layer.input_shapes
    if layer.output_shape is None or region.ndim != len(layer.output_shape):
        return tuple(Region.full(shape) for shape in shapes)
    if region.is_empty:
        return tuple(Region.full(shape).along(0, 0, 0) if shape else Region(())
                     for shape in shapes)
    kind = layer.kind
    if kind is OpKind.INPUT:
        return ()
    if kind in (OpKind.CONV, OpKind.POOL) and len(shapes) == 1:
        return (_window(layer, region),)
    if kind is OpKind.ADAPTIVE_POOL and len(shapes) == 1:
        return (_adaptive(region, shapes[0], layer.output_shape),)
    if kind is OpKind.LINEAR and len(shapes) == 1:
        return (region.along(-1, 0, shapes[0][-1]),)
    if kind is OpKind.ELEMENTWISE:
        return tuple(_broadcast(region, shape) for shape in shapes)
    if kind is OpKind.CONCAT:
        return _concat(layer, region)
    if kind is OpKind.UPSAMPLE and len(shapes) == 1:
        return (_upsample(layer, region, shapes[0]),)
    if kind is OpKind.RESHAPE and len(shapes) == 1:
        return (_reshape(region, shapes[0], layer.output_shape),)
    return tuple(Region.full(shape) for shape in shapes)


def required_regions(graph: LayerGraph, wanted: Mapping[str, Region],
                     within: Iterable[str]) -> dict[str, Region]:
    """Regions of each layer in ``within`` and of the layers feeding them that are needed
    to compute ``wanted`` (layer name -> region of its output), walking backwards.

    Requirements from several consumers of one layer are merged into their hull; every
    region is clipped to its layer's output.
    """
    members = set(within)
    needed = dict(wanted)
    for name in sorted(members, key=graph.index_of, reverse=True):
        if name not in needed:
            continue
        layer = graph[name]
        region = _clip_to(layer, needed[name])
        needed[name] = region
        for producer, need in zip(layer.inputs, input_regions(layer, region), strict=True):
            need = _clip_to(graph[producer], need)
            needed[producer] = needed[producer].hull(need) if producer in needed else need
    return needed


def _clip_to(layer: Layer, region: Region) -> Region:
    shape = layer.output_shape
    return region.clip(shape) if shape is not None and region.ndim == len(shape) else region


def _window(layer: Layer, region: Region) -> Region:
    """Sliding window of a conv or pool: channel groups and unclipped spatial halos."""
    geometry, in_shape = layer.geometry, layer.input_shapes[0]
    spatial = len(geometry.kernel)
    first_spatial = region.ndim - spatial
    result = region
    if layer.kind is OpKind.CONV:
        channel = first_spatial - 1
        out_channels, in_channels = layer.output_shape[channel], in_shape[channel]
        out_per_group = out_channels // geometry.groups
        in_per_group = in_channels // geometry.groups
        c0, c1 = region.bounds[channel]
        first_group, last_group = c0 // out_per_group, (c1 - 1) // out_per_group
        result = result.along(channel, first_group * in_per_group,
                              (last_group + 1) * in_per_group)
    for i in range(spatial):
        o0, o1 = region.bounds[first_spatial + i]
        k, s, p, d = (geometry.kernel[i], geometry.stride[i], geometry.padding[i],
                      geometry.dilation[i])
        result = result.along(first_spatial + i, o0 * s - p, (o1 - 1) * s - p + d * (k - 1) + 1)
    return result


def _adaptive(region: Region, in_shape: Shape, out_shape: Shape) -> Region:
    result = region
    for dim in range(len(out_shape) - len(out_shape[2:]), len(out_shape)):
        size_in, size_out = in_shape[dim], out_shape[dim]
        o0, o1 = region.bounds[dim]
        result = result.along(dim, (o0 * size_in) // size_out, -((-o1 * size_in) // size_out))
    return result


def _broadcast(region: Region, in_shape: Shape) -> Region:
    """The input region of a broadcasting element-wise op (shapes aligned on the right)."""
    offset = region.ndim - len(in_shape)
    if offset < 0:
        return Region.full(in_shape)
    return Region(tuple((0, 1) if size == 1 else region.bounds[offset + i]
                        for i, size in enumerate(in_shape)))


def _concat(layer: Layer, region: Region) -> tuple[Region, ...]:
    dim, pieces, sizes = layer.attrs["dim"], layer.attrs["pieces"], layer.attrs["sizes"]
    result = {name: region.along(dim, 0, 0) for name in layer.inputs}
    offset = 0
    for name, size in zip(pieces, sizes, strict=True):
        start, stop = region.bounds[dim]
        low, high = max(start, offset), min(stop, offset + size)
        if low < high:
            result[name] = result[name].hull(region.along(dim, low - offset, high - offset))
        offset += size
    return tuple(result[name] for name in layer.inputs)


def _upsample(layer: Layer, region: Region, in_shape: Shape) -> Region:
    """Nearest: exact; other modes: a window of two source pixels either side, clipped."""
    result = region
    nearest = layer.attrs.get("mode") == "nearest"
    for dim in range(2, region.ndim):
        size_in, size_out = in_shape[dim], layer.output_shape[dim]
        o0, o1 = region.bounds[dim]
        if nearest:
            start, stop = (o0 * size_in) // size_out, ((o1 - 1) * size_in) // size_out + 1
        else:
            ratio = size_in / size_out
            start = max(0, math.floor((o0 + 0.5) * ratio - 0.5) - 2)
            stop = min(size_in, math.floor((o1 - 0.5) * ratio - 0.5) + 3)
        result = result.along(dim, start, stop)
    return result


def _reshape(region: Region, in_shape: Shape, out_shape: Shape) -> Region:
    """Batch rows map to batch rows when the rest is taken whole; otherwise all of it."""
    rest_whole = all(bounds == (0, size) for bounds, size in zip(region.bounds[1:], out_shape[1:]))
    if in_shape and out_shape and in_shape[0] == out_shape[0] and rest_whole:
        return Region.full(in_shape).along(0, *region.bounds[0])
    return Region.full(in_shape)


def covers(boxes: Iterable[Region], target: Region) -> bool:
    """True when the union of ``boxes`` contains ``target``.

    Cuts ``target`` at every box boundary inside it and checks each cell of that grid.
    """
    boxes = [box.intersect(target) for box in boxes]
    boxes = [box for box in boxes if not box.is_empty]
    if target.is_empty:
        return True
    cuts = []
    for dim, (start, stop) in enumerate(target.bounds):
        points = {start, stop} | {p for box in boxes for p in box.bounds[dim] if start < p < stop}
        cuts.append(sorted(points))
    for cell in itertools.product(*(zip(c, c[1:]) for c in cuts)):
        if not any(Region(cell).intersect(box) == Region(cell) for box in boxes):
            return False
    return True
