"""Region arithmetic against brute force: the input elements an output region really reads.

The brute force differentiates the sum of an output region (weighted by random positive
numbers) with respect to the input: an input element is read iff its gradient can be
non-zero. For ops whose every output reads every element of its window (convolution with
non-zero weights, average pools, concatenation, nearest upsampling…) the computed region
must equal the bounding box of that support; for max pooling and bilinear upsampling,
whose gradients reach only some elements, it must contain it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import edgeweave as ew
from edgeweave.units import Region, input_regions, required_regions
from tests.strategies import regions


def _support(model: nn.Module, inputs: tuple[torch.Tensor, ...], region: Region):
    """Bounding box of the input elements each input's gradient reaches, per input."""
    inputs = tuple(x.clone().requires_grad_(True) for x in inputs)
    out = model(*inputs)
    weights = torch.rand(out.shape, generator=torch.Generator().manual_seed(0)) + 0.5
    (out[region.slices()] * weights[region.slices()]).sum().backward()
    boxes = []
    for x in inputs:
        nonzero = (x.grad != 0).nonzero()
        if len(nonzero) == 0:
            boxes.append(None)
        else:
            boxes.append(Region(tuple((int(lo), int(hi) + 1) for lo, hi
                                      in zip(nonzero.min(0).values, nonzero.max(0).values))))
    return boxes


def _check(model, inputs, region, exact: bool, layer_index: int = 1):
    model = model.eval()
    graph = ew.trace(model, inputs)
    layer = list(graph)[len(inputs) - 1 + layer_index]
    computed = input_regions(layer, region)
    by_input = dict(zip(layer.inputs, computed))
    for name, x, support in zip(graph.inputs, inputs, _support(model, inputs, region)):
        clipped = by_input[name].clip(x.shape)
        if support is None:
            assert clipped.is_empty or not exact
            continue
        assert clipped.contains(support), (layer, region, clipped, support)
        if exact:
            assert clipped == support, (layer, region, clipped, support)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), cin=st.integers(1, 4), groups=st.integers(1, 2), k=st.integers(1, 4),
       s=st.integers(1, 3), d=st.integers(1, 2), size=st.integers(8, 14))
def test_conv_window_equals_brute_force(data, cin, groups, k, s, d, size):
    p = data.draw(st.integers(0, d * (k - 1) // 2))
    conv = nn.Conv2d(cin * groups, 2 * groups, (k, max(1, k - 1)), s, (p, 0), (d, 1), groups)
    nn.init.uniform_(conv.weight, 0.1, 1.0)
    x = torch.randn(1, cin * groups, size, size + 1)
    out_shape = conv(x).shape
    # a dilated kernel skips input rows inside its box: the box then only contains them
    _check(conv, (x,), data.draw(regions(out_shape)), exact=d == 1)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), k=st.integers(1, 4), s=st.integers(1, 3), ceil=st.booleans(),
       size=st.integers(5, 13), average=st.booleans())
def test_pool_window_matches_brute_force(data, k, s, ceil, size, average):
    p = data.draw(st.integers(0, k // 2))
    pool = (nn.AvgPool2d(k, s, p, ceil_mode=ceil) if average
            else nn.MaxPool2d(k, s, p, ceil_mode=ceil))
    x = torch.randn(1, 2, size, size)
    _check(pool, (x,), data.draw(regions(pool(x).shape)), exact=average)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), size=st.integers(3, 11), out=st.integers(1, 5))
def test_adaptive_pool_equals_brute_force(data, size, out):
    pool = nn.AdaptiveAvgPool2d((out, max(1, out - 1)))
    x = torch.randn(1, 2, size, size + 2)
    _check(pool, (x,), data.draw(regions(pool(x).shape)), exact=True)


class _Concat(nn.Module):
    def forward(self, a, b):
        return torch.cat([a, b, a], 1)


class _Broadcast(nn.Module):
    def forward(self, a, b):
        return a * b


class _Up(nn.Module):
    def __init__(self, scale, mode):
        super().__init__()
        self.scale, self.mode = scale, mode

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), ca=st.integers(1, 3), cb=st.integers(1, 3))
def test_concat_offsets_equal_brute_force(data, ca, cb):
    a, b = torch.randn(1, ca, 4, 5), torch.randn(1, cb, 4, 5)
    _check(_Concat(), (a, b), data.draw(regions((1, 2 * ca + cb, 4, 5))), exact=True,
           layer_index=1)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_broadcast_equals_brute_force(data):
    a, b = torch.rand(1, 3, 5, 6) + 0.5, torch.rand(1, 3, 1, 1) + 0.5
    _check(_Broadcast(), (a, b), data.draw(regions((1, 3, 5, 6))), exact=True)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), scale=st.integers(2, 3), mode=st.sampled_from(["nearest", "bilinear"]))
def test_upsample_matches_brute_force(data, scale, mode):
    x = torch.randn(1, 2, 4, 5)
    _check(_Up(scale, mode), (x,), data.draw(regions((1, 2, 4 * scale, 5 * scale))),
           exact=mode == "nearest")


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_linear_and_flatten_need_whole_rows(data):
    linear = nn.Linear(12, 5)
    nn.init.uniform_(linear.weight, 0.1, 1.0)
    _check(linear, (torch.randn(3, 12),), data.draw(regions((3, 5))), exact=True)
    model = nn.Sequential(nn.Flatten(), linear)
    x = torch.randn(3, 3, 2, 2)
    graph = ew.trace(model.eval(), x)
    needs = required_regions(graph, {"_1": Region(((1, 2), (0, 5)))}, ["_0", "_1"])
    assert needs["input_1"] == Region(((1, 2), (0, 3), (0, 2), (0, 2)))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), depth=st.integers(1, 4), k=st.integers(1, 3), s=st.integers(1, 2))
def test_fused_stack_receptive_field_equals_brute_force(data, depth, k, s):
    layers: list[nn.Module] = []
    for i in range(depth):
        conv = nn.Conv2d(2, 2, 2 * k - 1 if i % 2 else k, s if i == 0 else 1, k // 2)
        nn.init.uniform_(conv.weight, 0.1, 1.0)
        layers += [conv, nn.AvgPool2d(2, 1)] if i % 2 else [conv]
    stack = nn.Sequential(*layers).eval()
    x = torch.randn(1, 2, 17, 15)
    graph = ew.trace(stack, x)
    last = graph.topological_order()[-1]
    region = data.draw(regions(graph[last].output_shape))
    needs = required_regions(graph, {last: region}, graph.topological_order()[1:])
    (support,) = _support(stack, (x,), region)
    assert needs[graph.inputs[0]] == support


def test_region_text_round_trips_and_set_operations():
    region = Region(((0, 1), (0, 64), (8, 16), (-1, 57)))
    assert repr(region) == "[0:1,0:64,8:16,-1:57]"
    assert Region.parse(repr(region)) == region
    assert region.clip((1, 64, 56, 56)) == Region(((0, 1), (0, 64), (8, 16), (0, 56)))
    band = Region.full((1, 4, 10, 10)).along(2, 2, 5)
    assert band.shape == (1, 4, 3, 10) and band.numel == 120
    other = band.along(2, 4, 8)
    assert band.intersect(other).bounds[2] == (4, 5)
    assert band.hull(other).bounds[2] == (2, 8)
    assert band.along(2, 5, 5).is_empty and band.contains(band.along(2, 5, 5))
    assert band.intersect(band.along(2, 6, 9)).is_empty


class _MiniNeck(nn.Module):
    """YOLOv5's blocks on a small input: branches, pools, upsampling and concatenation."""

    def __init__(self) -> None:
        super().__init__()
        from edgeweave.models.yolov5 import C3, SPPF, _conv

        self.stem, self.c3, self.sppf = _conv(3, 8, 3, 2), C3(8, 8, 1), SPPF(8, 8)
        self.down, self.up, self.head = _conv(8, 8, 3, 2), nn.Upsample(scale_factor=2), C3(16, 4, 1)

    def forward(self, x):
        p = self.c3(self.stem(x))
        return self.head(torch.cat([self.up(self.sppf(self.down(p))), p], 1))


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_required_regions_through_a_dag_contain_what_the_output_reads(data):
    from edgeweave.models._common import seeded

    model = seeded(_MiniNeck, 0, ((1, 3, 32, 32),))
    x = torch.randn(1, 3, 32, 32)
    graph = ew.trace(model, x)
    output = graph.outputs[0]
    region = data.draw(regions(graph[output].output_shape))
    needs = required_regions(graph, {output: region}, graph.topological_order())
    (support,) = _support(model, (x,), region)
    assert needs["x"].contains(support)
    full = Region.full(graph[output].output_shape)
    everything = required_regions(graph, {output: full}, graph.topological_order())
    assert all(everything[layer.name] == Region.full(layer.output_shape) for layer in graph)
