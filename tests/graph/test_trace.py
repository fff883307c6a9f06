"""Tracing: every zoo model, FLOPs against published figures, op geometry, odd modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import edgeweave as ew
from edgeweave.errors import ExampleInputError, ModelError, UntraceableModelError
from edgeweave.graph import OpKind
from tests.conftest import zoo_graph, zoo_model, zoo_output

# Published compute per inference, in multiply-adds (torchvision / timm model cards,
# Ultralytics for YOLOv5s at 640 reports 16.6 GFLOPs = 8.3 GMACs, darknet for YOLOv2 at
# 608 reports 62.94 BFLOPs). Our FLOPs count a multiply-add as 2.
PUBLISHED_GMACS = {
    "alexnet": 0.714, "vgg16": 15.47, "googlenet": 1.50, "resnet18": 1.81, "resnet50": 4.09,
    "mobilenet_v2": 0.30, "inception_resnet_v2": 13.18, "yolov5s": 8.3, "yolov2": 31.47,
}


@pytest.mark.parametrize("name", ew.models.names())
def test_layer_by_layer_execution_equals_the_model(name):
    graph = zoo_graph(name)
    _, inputs = zoo_model(name)
    output = graph.run(*inputs)
    outputs = output if isinstance(output, tuple) else (output,)
    for ours, theirs in zip(outputs, zoo_output(name), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("name", ew.models.names())
def test_every_layer_is_described(name):
    graph = zoo_graph(name)
    module, _ = zoo_model(name)
    assert graph.param_bytes == sum(t.numel() * t.element_size()
                                    for t in module.state_dict().values())
    for layer in graph:
        assert layer.output_shape is not None and layer.dtype == "float32"
        assert layer.output_bytes == 4 * torch.Size(layer.output_shape).numel()
        assert layer.param_bytes == sum(graph.param_sizes[p] for p in layer.params)
        assert all(graph.index_of(p) < graph.index_of(layer.name) for p in layer.inputs)
        assert (layer.geometry is not None) == (layer.kind in (OpKind.CONV, OpKind.POOL))


@pytest.mark.parametrize("name", sorted(PUBLISHED_GMACS))
def test_flops_match_the_published_figures_within_5_percent(name):
    assert zoo_graph(name).flops / 2e9 == pytest.approx(PUBLISHED_GMACS[name], rel=0.05)


def test_geometry_and_attributes_are_read_from_the_ops():
    resnet = zoo_graph("resnet18")
    stem = resnet["stem_0"]
    assert (stem.kind, stem.target) == (OpKind.CONV, "stem.0")
    assert (stem.geometry.kernel, stem.geometry.stride, stem.geometry.padding) == \
        ((7, 7), (2, 2), (3, 3))
    assert stem.flops == 2 * 64 * 112 * 112 * 3 * 7 * 7
    assert stem.param_bytes == 64 * 3 * 7 * 7 * 4 and stem.params == ("stem.0.weight",)
    assert resnet["maxpool"].attrs["mode"] == "max"
    googlenet_pools = [layer for layer in zoo_graph("googlenet") if layer.kind is OpKind.POOL]
    assert all(layer.geometry.ceil_mode for layer in googlenet_pools)
    yolo = zoo_graph("yolov5s")
    assert {layer.attrs["dim"] for layer in yolo if layer.kind is OpKind.CONCAT} == {1}
    upsamples = [layer for layer in yolo if layer.kind is OpKind.UPSAMPLE]
    assert [(u.attrs["scale"], u.attrs["mode"]) for u in upsamples] == [((2.0, 2.0), "nearest")] * 2
    depthwise = [layer for layer in zoo_graph("mobilenet_v2")
                 if layer.geometry and layer.geometry.groups > 1]
    assert depthwise and all(layer.geometry.groups == layer.output_shape[1] for layer in depthwise)


def test_shared_weights_are_listed_by_each_use_and_counted_once():
    graph = zoo_graph("siamese")
    first_convs = [layer for layer in graph if layer.target == "branch.0.0"]
    assert len(first_convs) == 2 and first_convs[0].params == first_convs[1].params
    assert graph.param_bytes < sum(layer.param_bytes for layer in graph)


@settings(max_examples=25, deadline=None)
@given(
    channels=st.integers(1, 6), out_channels=st.integers(1, 6), size=st.integers(9, 20),
    kernel=st.integers(1, 4), stride=st.integers(1, 3), padding=st.integers(0, 2),
    dilation=st.integers(1, 2), pool=st.integers(1, 3), ceil=st.booleans(),
)
def test_conv_and_pool_geometry_shapes_and_flops(channels, out_channels, size, kernel, stride,
                                                 padding, dilation, pool, ceil):
    padding = min(padding, kernel // 2)
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    assume(out >= pool)  # a valid model: the pool window fits the conv's output
    conv = nn.Conv2d(channels, out_channels, kernel, stride, padding, dilation)
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(pool, ceil_mode=ceil)).eval()
    x = torch.randn(1, channels, size, size)
    graph = ew.trace(model, x)
    conv_layer, _, pool_layer = list(graph)[1:]
    assert conv_layer.output_shape == (1, out_channels, out, out)
    assert conv_layer.geometry.dilation == (dilation, dilation)
    assert conv_layer.flops == 2 * out_channels * out * out * channels * kernel * kernel
    assert pool_layer.geometry.kernel == (pool, pool) and pool_layer.geometry.ceil_mode == ceil
    torch.testing.assert_close(graph.run(x), model(x), rtol=0, atol=0)


class _DataDependent(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class _Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.block = nn.Sequential(nn.ReLU(), _DataDependent())

    def forward(self, x):
        return self.block(self.conv(x))


def test_an_untraceable_module_is_named_with_the_way_out():
    model, x = _Wrapper().eval(), torch.randn(1, 3, 8, 8)
    with pytest.raises(UntraceableModelError, match=r"module 'block\.1' \(_DataDependent\).*"
                                                    r"leaf_modules=\['block\.1'\]"):
        ew.trace(model, x)
    for leaf in ("block.1", _DataDependent):
        graph = ew.trace(model, x, leaf_modules=[leaf])
        assert graph["block_1"].kind is OpKind.OTHER
        torch.testing.assert_close(graph.run(x), model(x))


class _ShapeArithmetic(nn.Module):
    """Uses shapes as values and a tuple-returning op; weights used functionally."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3))
        self.register_buffer("scale", torch.tensor(0.5))

    def forward(self, x):
        y = F.conv2d(x, self.weight, padding=1, stride=(2, 2))
        left, right = torch.chunk(y, 2, dim=1)
        z = (left + right) * self.scale
        return z.view(z.size(0), z.shape[1], -1).mean(-1)


def test_shape_values_fold_into_constants_and_functional_ops_are_understood():
    model, x = _ShapeArithmetic().eval(), torch.randn(2, 3, 10, 10)
    graph = ew.trace(model, x)
    assert not any("size" in layer.name or "getattr" in layer.name for layer in graph)
    conv = next(layer for layer in graph if layer.kind is OpKind.CONV)
    assert conv.geometry.stride == (2, 2) and conv.params == ("weight",)
    assert conv.param_bytes == 8 * 3 * 3 * 3 * 4
    chunk = next(layer for layer in graph if layer.target.endswith("chunk"))
    assert chunk.output_shape is None and chunk.output_bytes == 2 * 8 * 5 * 5 * 4
    torch.testing.assert_close(graph.run(x), model(x))


def test_bad_models_and_examples_get_clear_errors():
    model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    with pytest.raises(ModelError, match="needs a torch.nn.Module"):
        ew.trace(lambda x: x, torch.zeros(1))
    with pytest.raises(ExampleInputError, match="must hold at least one tensor"):
        ew.trace(model, [1, 2])
    with pytest.raises(ExampleInputError, match="has no argument\\(s\\) mask; it takes input"):
        ew.trace(model, {"mask": torch.zeros(1)})
    with pytest.raises(ExampleInputError, match="takes 1 input"):
        ew.trace(model, (torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)))
    with pytest.raises(ExampleInputError, match="failed at layer '_0'"):
        ew.trace(model, torch.zeros(1, 5, 8, 8))
    graph = ew.trace(model, torch.zeros(1, 3, 8, 8))
    with pytest.raises(ExampleInputError, match=r"shape \[1, 3, 8, 8\]; got float32 \[1, 3, 9, 9\]"):
        graph.run(torch.zeros(1, 3, 9, 9))


class CachingHead(nn.Module):
    """Caches per-shape values in attributes declared on its class, counts its calls in a
    buffer written in place and marks its class once run — as detection heads do."""

    shape, anchors = None, torch.empty(0)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        y = self.conv(x)
        if self.shape != y.shape:
            self.anchors = torch.arange(y.shape[-1], dtype=y.dtype)
            self.shape = y.shape
        self.calls += 1
        type(self).ran = True
        return (y + self.anchors).sum()


@pytest.mark.parametrize("method", ["auto", "export"])
def test_trace_leaves_the_module_as_it_found_it(method):
    module, x = CachingHead().eval(), torch.randn(1, 3, 8, 8)
    before, on_class = dict(vars(module)), dict(vars(CachingHead))
    state = {k: v.clone() for k, v in module.state_dict().items()}
    ew.trace(module, x, method=method)
    assert vars(module) == before and "anchors" not in vars(module)
    assert dict(vars(CachingHead)) == on_class and CachingHead.shape is None
    for key, value in module.state_dict().items():
        assert torch.equal(value, state[key]), key
    with torch.no_grad():
        output = module(x)  # the user's own call: a real tensor, not torch.export's fake
    assert type(output) is torch.Tensor and isinstance(output.item(), float)
