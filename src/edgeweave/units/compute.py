"""Compute a region of one layer's output from the regions of its inputs that it needs.

This is what a device does with an execution unit, in the inline oracle and in the
distributed runtime alike. Convolutions and pools run on their input window with the
border padding added explicitly; element-wise ops, concatenations, nearest upsampling and
linear layers run on their slices, with per-channel parameters sliced to the channels
computed. Any other op is *embedded*: its inputs are placed into zero tensors of full size,
the op runs whole and the region is cut out — correct because the region arithmetic says
the region reads nothing outside what was placed, if slower.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_leaves

from edgeweave.errors import GraphError
from edgeweave.graph import Layer, LayerGraph, OpKind
from edgeweave.graph.classify import BATCH_NORM_ARGS
from edgeweave.units.plan import Need, Unit, freed_after, layer_regions
from edgeweave.units.region import Region, input_regions

Piece = tuple[Region, torch.Tensor]  # a tensor and the region of its layer's output it holds


def value_bytes(value: Any) -> int:
    """Bytes of the tensors in a layer's value (one tensor, or a tuple of them, say)."""
    return sum(t.numel() * t.element_size() for t in tree_leaves(value)
               if isinstance(t, torch.Tensor))


def crop(piece: Piece, region: Region) -> torch.Tensor:
    """The part of ``piece`` covering ``region`` (which it must contain)."""
    have, tensor = piece
    if not region.bounds:  # a whole non-tensor value (a tuple from chunk, say)
        return tensor
    if not have.contains(region):
        raise GraphError(f"Region {region!r} is not inside the available {have!r}.")
    return tensor[tuple(slice(a - h, b - h) for (a, b), (h, _) in zip(region.bounds, have.bounds))]


def compute_region(graph: LayerGraph, name: str, region: Region,
                   available: Mapping[str, Piece]) -> torch.Tensor:
    """The ``region`` of layer ``name``'s output, from pieces of its inputs' outputs.

    ``available`` maps each input layer to a piece that holds at least the region of it
    that ``region`` reads (see ``input_regions``).
    """
    layer = graph[name]
    pieces: dict[str, Piece] = {}
    for producer, need in zip(layer.inputs, input_regions(layer, region), strict=True):
        clipped = _clip(graph[producer], need)
        if clipped.bounds and clipped.is_empty:  # not read (a concat piece outside the region)
            dtype = getattr(torch, graph[producer].dtype)
            pieces[producer] = (clipped, torch.empty(clipped.shape, dtype=dtype))
            continue
        if producer not in available:
            raise GraphError(f"Layer '{name}' needs layer '{producer}', which is not available.")
        try:
            pieces[producer] = (clipped, crop(available[producer], clipped))
        except GraphError:
            raise GraphError(f"Layer '{name}' region {region!r} needs {clipped!r} of layer "
                             f"'{producer}'; only {available[producer][0]!r} is there.") from None
    if layer.attrs.get("in_place"):  # never write into a tensor that others still read
        pieces = {p: (r, t.clone() if isinstance(t, torch.Tensor) else t)
                  for p, (r, t) in pieces.items()}
    with torch.no_grad():
        if _is_whole(graph, layer, region, pieces):
            return _run(graph, layer, {p: t for p, (_, t) in pieces.items()})
        fast = _FAST.get(layer.kind)
        result = fast(graph, layer, region, pieces) if fast else None
        result = result if result is not None else _embedded(graph, layer, region, pieces)
        # a trimmed window is a strided view, and element-wise kernels on strided views
        # run at half speed or worse: one copy here is cheaper than the next layers' loss
        return result.contiguous() if isinstance(result, torch.Tensor) else result


def _clip(layer: Layer, region: Region) -> Region:
    shape = layer.output_shape
    return region.clip(shape) if shape is not None and region.ndim == len(shape) else region


def _is_whole(graph: LayerGraph, layer: Layer, region: Region, pieces) -> bool:
    full = Region.full(layer.output_shape) if layer.output_shape is not None else region
    return region == full and all(
        graph[p].output_shape is None or r == Region.full(graph[p].output_shape)
        for p, (r, _) in pieces.items())


def _run(graph: LayerGraph, layer: Layer, tensors: Mapping[str, Any]) -> Any:
    return graph.execute(tensors, [layer.name])[layer.name]


def _embedded(graph: LayerGraph, layer: Layer, region: Region, pieces) -> torch.Tensor:
    full_inputs = {}
    for producer, (have, tensor) in pieces.items():
        shape = graph[producer].output_shape
        if shape is None or have == Region.full(shape):
            full_inputs[producer] = tensor
        else:
            whole = tensor.new_zeros(shape)
            whole[have.slices()] = tensor
            full_inputs[producer] = whole
    return _run(graph, layer, full_inputs)[region.slices()]


def _module(graph: LayerGraph, layer: Layer) -> nn.Module | None:
    node = graph.node(layer.name)
    return graph.module.get_submodule(node.target) if node.op == "call_module" else None


def _pad(tensor: torch.Tensor, window: Region, have: Region, spatial: int, value: float):
    """Pad the spatial dims of ``tensor`` (holding ``have``) out to the unclipped ``window``."""
    widths: list[int] = []
    for (w0, w1), (h0, h1) in reversed(list(zip(window.bounds, have.bounds))[-spatial:]):
        widths += [h0 - w0, w1 - h1]
    return F.pad(tensor, widths, value=value) if any(widths) else tensor


def _conv(graph, layer, region, pieces) -> torch.Tensor | None:
    weights = _weights(graph, layer, nn.Conv2d)
    if weights is None or len(pieces) != 1 or len(layer.geometry.kernel) != 2:
        return None
    weight, bias = weights
    (have, tensor), = pieces.values()
    window = input_regions(layer, region)[0]
    g = layer.geometry
    c0, c1 = region.bounds[1]
    per_group = layer.output_shape[1] // g.groups
    first, last = c0 // per_group, (c1 - 1) // per_group  # whole groups, cut afterwards
    weight = weight[first * per_group:(last + 1) * per_group]
    bias = None if bias is None else bias[first * per_group:(last + 1) * per_group]
    x, padding, skip = _conv_borders(tensor, window, have, g.stride)
    out = F.conv2d(x, weight, bias, g.stride, padding, g.dilation, last - first + 1)
    return out[:, c0 - first * per_group:c1 - first * per_group, skip[0]:skip[0] + region.shape[2],
               skip[1]:skip[1] + region.shape[3]]


def _weights(graph: LayerGraph, layer: Layer, kind: type[nn.Module]) -> tuple | None:
    """Weight and bias of a convolution or linear layer: its module's, or the parameters
    its function call reads (None when it computes them, or is some other module)."""
    module = _module(graph, layer)
    if module is not None:
        return (module.weight, module.bias) if isinstance(module, kind) else None
    node = graph.node(layer.name)
    weight, bias = _raw(node, 1, "weight"), _raw(node, 2, "bias")
    if weight is None or not all(v is None or (isinstance(v, torch.fx.Node) and v.op == "get_attr")
                                 for v in (weight, bias)):
        return None
    return _argument(graph, node, 1, "weight"), _argument(graph, node, 2, "bias")


def _conv_borders(tensor: torch.Tensor, window: Region, have: Region, stride):
    """Zeros a convolution's window reaches beyond the map, as the convolution's own
    (symmetric) padding where it can be — ``F.pad`` copies the whole input, the
    convolution does not — and the outputs to skip at the start of each spatial dim.

    ``have`` is ``window`` clipped to the map: ``low`` zeros are missing before it and
    ``high`` after. Padding by ``max(low, high)`` on both sides computes every wanted
    output; the extra zeros only reach outputs beyond the wanted ones, or — when
    ``high > low`` — before them, which are skipped when the shift is whole strides.
    """
    padding, skip, explicit = [], [], []
    for (w0, w1), (h0, h1), s in zip(window.bounds[2:], have.bounds[2:], stride):
        low, high = h0 - w0, w1 - h1
        if low >= high or (high - low) % s == 0:
            padding.append(max(low, high))
            skip.append(max(0, high - low) // s)
            explicit += [0, 0]
        else:  # a shift of part of a stride: pad this dim by hand
            padding.append(0)
            skip.append(0)
            explicit += [low, high]
    if any(explicit):
        tensor = F.pad(tensor, [*explicit[2:], *explicit[:2]])  # F.pad lists the last dim first
    return tensor, tuple(padding), skip


def _pool(graph, layer, region, pieces) -> torch.Tensor | None:
    mode, g = layer.attrs.get("mode"), layer.geometry
    if len(pieces) != 1 or len(g.kernel) != 2:
        return None
    if mode == "avg" and (g.ceil_mode or not layer.attrs.get("count_include_pad", True)):
        return None  # PyTorch's divisor at the border depends on the whole tensor
    (have, tensor), = pieces.values()
    window = input_regions(layer, region)[0]
    x = _pad(tensor, window, have, 2, float("-inf") if mode == "max" else 0.0)
    if mode == "max":
        out = F.max_pool2d(x, g.kernel, g.stride, 0, g.dilation, ceil_mode=False)
    else:
        out = F.avg_pool2d(x, g.kernel, g.stride, 0, ceil_mode=False)
    return out[_rest(region, 2)] if out.shape[2:] != region.shape[2:] else out


def _rest(region: Region, spatial: int) -> tuple[slice, ...]:
    """Slices that trim a window computation to the region's spatial extent."""
    return (slice(None), slice(None), *(slice(0, n) for n in region.shape[-spatial:]))


def _elementwise(graph, layer, region, pieces) -> torch.Tensor | None:
    tensors = {p: t for p, (_, t) in pieces.items()}
    norm = _batch_norm(graph, layer)
    if norm is not None:
        c0, c1 = region.bounds[1]
        mean, var, weight, bias, eps = norm
        (x,) = tensors.values()
        return F.batch_norm(x, mean[c0:c1], var[c0:c1],
                            None if weight is None else weight[c0:c1],
                            None if bias is None else bias[c0:c1], False, 0.0, eps)
    if layer.params:
        return None  # parameters of full size (PReLU's, a layer scale): embed
    # each input piece is the region itself, or 1 where the input broadcasts
    return _run(graph, layer, tensors)


def _batch_norm(graph: LayerGraph, layer: Layer) -> tuple | None:
    """Statistics, weight, bias and eps of a batch norm layer (module or function)."""
    module = _module(graph, layer)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.running_mean, module.running_var, module.weight, module.bias, module.eps
    node = graph.node(layer.name)
    where = BATCH_NORM_ARGS.get(node.target)
    if module is not None or where is None:
        return None
    values = {key: _argument(graph, node, index, key) for key, index in where.items()}
    return values["mean"], values["var"], values["weight"], values["bias"], values["eps"]


def _raw(node, index: int, name: str) -> Any:
    return node.args[index] if len(node.args) > index else node.kwargs.get(name)


def _argument(graph: LayerGraph, node, index: int, name: str) -> Any:
    """A call's argument, with a parameter (a ``get_attr`` node) read from the module."""
    value = _raw(node, index, name)
    if isinstance(value, torch.fx.Node):
        if value.op != "get_attr":
            raise GraphError(f"Layer '{node.name}' reads '{name}' from another layer.")
        return functools.reduce(getattr, value.target.split("."), graph.module)
    return value


def _concat(graph, layer, region, pieces) -> torch.Tensor:
    dim, start, stop = layer.attrs["dim"], *region.bounds[layer.attrs["dim"]]
    parts, offset = [], 0
    for producer, size in zip(layer.attrs["pieces"], layer.attrs["sizes"], strict=True):
        low, high = max(start, offset), min(stop, offset + size)
        if low < high:
            parts.append(crop(pieces[producer], region.along(dim, low - offset, high - offset)))
        offset += size
    return torch.cat(parts, dim)


def _upsample(graph, layer, region, pieces) -> torch.Tensor | None:
    scale = layer.attrs.get("scale", ())
    if layer.attrs.get("mode") != "nearest" or not all(float(s).is_integer() for s in scale):
        return None
    (have, tensor), = pieces.values()
    factors = [int(s) for s in scale]
    out = F.interpolate(tensor, scale_factor=factors, mode="nearest")
    offsets = [o0 - h0 * f for (o0, _), (h0, _), f in zip(region.bounds[2:], have.bounds[2:],
                                                          factors)]
    return out[(slice(None), slice(None),
                *(slice(o, o + n) for o, n in zip(offsets, region.shape[2:])))]


def _linear(graph, layer, region, pieces) -> torch.Tensor | None:
    weights = _weights(graph, layer, nn.Linear)
    if weights is None or len(pieces) != 1:
        return None
    weight, bias = weights
    (x,) = (t for _, t in pieces.values())
    f0, f1 = region.bounds[-1]
    return F.linear(x, weight[f0:f1], None if bias is None else bias[f0:f1])


_FAST = {OpKind.CONV: _conv, OpKind.POOL: _pool, OpKind.ELEMENTWISE: _elementwise,
         OpKind.CONCAT: _concat, OpKind.UPSAMPLE: _upsample, OpKind.LINEAR: _linear}


def input_unit(graph: LayerGraph, unit: Unit,
               inputs: tuple[torch.Tensor, ...]) -> dict[str, Piece]:
    """What an input unit computes: its region of the model input, from the model's
    inputs (a tuple in the order of ``graph.inputs``)."""
    tensor = inputs[graph.inputs.index(unit.last)]
    return {unit.last: (unit.region, tensor[unit.region.slices()])}


def compute_unit(graph: LayerGraph, unit: Unit, received: list[tuple[Need, torch.Tensor]],
                 keep: Collection[str] | None = None) -> dict[str, Piece]:
    """Run ``unit`` on the tensors its needs delivered; returns a piece of each of its
    layers in ``keep`` (default: all of them; a fused stack computes each layer's part of
    the last layer's receptive field). A layer not kept is freed once the last layer of
    the stack that reads it has run, so a stack holds about two layers' regions at a time."""
    by_layer: dict[str, list[Piece]] = {}
    for need, tensor in received:
        by_layer.setdefault(need.layer, []).append((need.region, tensor))
    if unit.relay:  # gathers what others computed
        return {unit.last: (unit.region, assemble(unit.region, by_layer[unit.last]))}
    available = {layer: merge(pieces) for layer, pieces in by_layer.items()}
    regions = layer_regions(unit, graph)
    freed = freed_after(regions, graph, set(regions) if keep is None else keep)
    outputs: dict[str, Piece] = {}
    for layer, region in regions.items():
        available[layer] = (region, compute_region(graph, layer, region, available))
        if keep is None or layer in keep:
            outputs[layer] = available[layer]
        for name in freed[layer]:
            del available[name]
    return outputs


def merge(pieces: list[Piece]) -> Piece:
    """One piece covering the hull of several pieces of the same layer's output."""
    if len(pieces) == 1:
        return pieces[0]
    hull = pieces[0][0]
    for region, _ in pieces[1:]:
        hull = hull.hull(region)
    return hull, assemble(hull, pieces)


def assemble(region: Region, pieces: list[Piece]) -> torch.Tensor:
    """One tensor of ``region`` from pieces that together cover it (a need met by several
    producers, or an output computed in bands or tiles)."""
    for have, tensor in pieces:
        if have == region:  # a whole non-tensor value (Region(())) always takes this path
            return tensor
    result = None
    for have, tensor in pieces:
        part = have.intersect(region)
        if part.is_empty:
            continue
        if result is None:
            result = tensor.new_empty(region.shape)
        target = tuple(slice(a - r, b - r) for (a, b), (r, _) in zip(part.bounds, region.bounds))
        result[target] = crop((have, tensor), part)
    if result is None:
        raise GraphError(f"No piece overlaps region {region!r}.")
    return result
