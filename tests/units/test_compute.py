"""Computing a region of a layer from the input regions it needs equals cutting the region
out of the whole layer's output — for every layer of real models and random geometries."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import edgeweave as ew
from edgeweave.errors import GraphError
from edgeweave.graph import OpKind
from edgeweave.models._common import seeded
from edgeweave.units import Region, input_regions
from edgeweave.units.compute import compute_region
from tests.strategies import regions

# zoo architectures at small inputs, so that every layer can be tried in every split
SMALL = {"yolov5s": 128, "googlenet": 96, "resnet18": 64, "mobilenet_v2": 64, "yolov2": 96,
         "inception_resnet_v2": 107, "alexnet": 99}


@functools.cache
def _small(name: str):
    # float64, so that a region must equal the whole to rounding (1e-9)
    module = seeded(ew.models.ZOO[name].build, 0, ((1, 3, SMALL[name], SMALL[name]),)).double()
    x = torch.randn(1, 3, SMALL[name], SMALL[name],
                    generator=torch.Generator().manual_seed(1)).double()
    graph = ew.trace(module, x, name=name)
    return graph, {**{graph.inputs[0]: x}, **graph.run_all(x)}


def _splits(shape):
    """Whole, a middle row band, a channel range and a 2-D tile of an output shape."""
    full = Region.full(shape)
    regions = [full]
    if len(shape) >= 2 and shape[1] > 1:
        regions.append(full.along(1, shape[1] // 3, max(shape[1] // 3 + 1, 2 * shape[1] // 3)))
    if len(shape) == 4:
        h, w = shape[2], shape[3]
        regions.append(full.along(2, h // 3, max(h // 3 + 1, 2 * h // 3)))
        regions.append(full.along(2, h // 2, h).along(3, 0, max(1, w // 2)))
    return regions


def _check(graph, values, name, region):
    layer = graph[name]
    available = {}
    for producer, need in zip(layer.inputs, input_regions(layer, region)):
        shape = graph[producer].output_shape
        clipped = need.clip(shape) if shape else need
        # hand over exactly the needed piece, as another device would
        piece = values[producer][clipped.slices()] if shape else values[producer]
        available[producer] = (clipped, piece)
    ours = compute_region(graph, name, region, available)
    torch.testing.assert_close(ours, values[name][region.slices()], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("model", sorted(SMALL))
def test_every_layer_in_every_split_equals_the_whole(model):
    graph, values = _small(model)
    for layer in graph:
        if layer.kind is OpKind.INPUT or layer.output_shape is None:
            continue
        for region in _splits(layer.output_shape):
            _check(graph, values, layer.name, region)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), groups=st.sampled_from([1, 2, 4]), k=st.integers(1, 4),
       s=st.integers(1, 3), d=st.integers(1, 2), pool_k=st.integers(2, 3), ceil=st.booleans(),
       average=st.booleans(), include_pad=st.booleans())
def test_random_conv_and_pool_regions(data, groups, k, s, d, pool_k, ceil, average, include_pad):
    p = data.draw(st.integers(0, d * (k - 1) // 2))
    pool_p = data.draw(st.integers(0, pool_k // 2))
    pool = (nn.AvgPool2d(pool_k, 2, pool_p, ceil, include_pad) if average
            else nn.MaxPool2d(pool_k, 2, pool_p, ceil_mode=ceil))
    model = nn.Sequential(nn.Conv2d(4, 8, k, s, p, d, groups), nn.BatchNorm2d(8), nn.ReLU(),
                          pool, nn.Upsample(scale_factor=2)).eval()
    model[1].running_mean.uniform_(-1, 1)
    model.double()
    x = torch.randn(1, 4, 17, 16, dtype=torch.float64)
    graph = ew.trace(model, x)
    values = {graph.inputs[0]: x, **graph.run_all(x)}
    for layer in list(graph)[1:]:
        _check(graph, values, layer.name, data.draw(regions(layer.output_shape)))


def test_a_missing_or_short_input_is_named():
    graph, values = _small("resnet18")
    conv = next(layer for layer in graph if layer.kind is OpKind.CONV and layer.name != "stem_0")
    region = Region.full(conv.output_shape).along(2, 0, 4)
    with pytest.raises(GraphError, match=f"needs layer '{conv.inputs[0]}'"):
        compute_region(graph, conv.name, region, {})
    short = Region.full(graph[conv.inputs[0]].output_shape).along(2, 0, 2)
    with pytest.raises(GraphError, match="only \\[0:1,0:64,0:2"):
        compute_region(graph, conv.name, region,
                       {conv.inputs[0]: (short, values[conv.inputs[0]][short.slices()])})
