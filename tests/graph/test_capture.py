"""Capture beyond plain torch.fx (issue 14): torch.export where fx cannot trace or traces
something else, forward arguments left at their defaults, layers whose value is a tuple,
modules with their own forward and functional ops with parameters — every planner's plan
equal to the model."""

from __future__ import annotations

import collections
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgeweave as ew
from edgeweave.graph import OpKind
from edgeweave.planners import PLANNERS
from edgeweave.runtime.coordinator import patience_s
from edgeweave.runtime.local import cpu_ticks
from edgeweave.units import Region
from edgeweave.units.compute import compute_region

CLUSTER = "rpi4b*2@ethernet"


class Chunky(nn.Module):
    """A tuple from chunk, a layer scale, a functional batch norm and a defaulted argument."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.side = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(1, 8, 1, 1))
        self.register_buffer("mean", torch.randn(8))
        self.register_buffer("var", torch.rand(8) + 0.5)
        self.head = nn.Linear(8, 5)

    def forward(self, x, extra=None):
        if extra is not None:
            x = x + extra
        y = F.batch_norm(self.conv(x), self.mean, self.var, training=False).relu()
        a, b = y.chunk(2, dim=1)
        z = torch.cat([self.side(a), b], 1) * self.scale
        return self.head(z.mean((2, 3))), {"z": z}


class SamePadConv(nn.Conv2d):
    """A convolution that pads in its own forward, as "same"-padding layers do."""

    def forward(self, x):
        return F.conv2d(F.pad(x, (0, 1, 0, 1)), self.weight, self.bias, self.stride)


class BranchesOnType(nn.Module):
    """fx traces the other branch: a Proxy is not a tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + 1 if isinstance(x, torch.Tensor) else self.conv(x)


def _equal_under_every_planner(graph, module, x):
    expected = module(x)
    for planner in PLANNERS:
        output = ew.run(ew.plan(graph, CLUSTER, planner=planner), x).output
        torch.testing.assert_close(output, expected, rtol=1e-4, atol=1e-5, msg=planner)


@pytest.mark.parametrize("method", ["fx", "export"])
def test_tuple_values_defaults_and_functional_parameters_plan_equal(method):
    torch.manual_seed(0)
    module, x = Chunky().eval(), torch.randn(1, 3, 12, 12)
    graph = ew.trace(module, x, method=method)
    assert any(layer.output_shape is None for layer in graph)  # the chunk's tuple
    assert any(layer.attrs.get("op") == "batch_norm" and layer.kind is OpKind.ELEMENTWISE
               for layer in graph)
    _equal_under_every_planner(graph, module, x)


class SplitByShape(nn.Module):
    """A shape read and folded away (its node erased), then a split: unpickled, fx's
    re-traced code would number the split's items differently. ``F.max_pool2d`` is a
    function pickle cannot name."""

    def forward(self, x):
        a, b = x.split(x.shape[1] // 2, 1)
        return F.max_pool2d(torch.cat([b.relu_(), a], 1), 2)


@pytest.mark.parametrize("method", ["fx", "export"])
def test_an_unpickled_graph_keeps_its_layer_names(method):
    # worker processes receive graphs pickled; export's own module does not pickle
    graph = ew.trace(SplitByShape(), torch.randn(1, 4, 8, 8), method=method)
    again = pickle.loads(pickle.dumps(graph))
    assert [n.name for n in again.module.graph.nodes] == [n.name for n in graph.module.graph.nodes]
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(again.run(x), SplitByShape()(x.clone()))


@pytest.mark.parametrize("method", ["fx", "export"])
def test_in_place_ops_never_write_into_a_shared_piece(method):
    # piece planners compute overlapping bands of an in-place activation from one stored
    # tensor on one device (MONAI's BasicUNet): each band must work on a copy
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(inplace=True)).eval()
    graph = ew.trace(module, torch.randn(1, 3, 12, 12), method=method)
    conv, activation = [layer for layer in graph if layer.kind is not OpKind.INPUT]
    assert activation.attrs["in_place"] and "in_place" not in conv.attrs
    stored = torch.randn(conv.output_shape)
    kept = stored.clone()
    whole = Region.full(conv.output_shape)
    for rows in ((0, 8), (4, 12)):  # overlapping bands
        band = compute_region(graph, activation.name, whole.along(2, *rows),
                              {conv.name: (whole, stored)})
        torch.testing.assert_close(band, F.leaky_relu(kept[:, :, rows[0]:rows[1]]))
    assert torch.equal(stored, kept)


def test_a_module_with_its_own_forward_is_not_read_by_its_class():
    torch.manual_seed(0)
    module = nn.Sequential(SamePadConv(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()
    x = torch.randn(1, 3, 11, 11)
    graph = ew.trace(module, x, leaf_modules=[SamePadConv])
    assert graph["_0"].kind is OpKind.OTHER
    _equal_under_every_planner(graph, module, x)


def test_auto_takes_export_where_fx_traces_something_else():
    module, x = BranchesOnType().eval(), torch.randn(1, 3, 8, 8)
    assert not torch.allclose(ew.trace(module, x, method="fx").run(x), module(x))
    graph = ew.trace(module, x)
    torch.testing.assert_close(graph.run(x), module(x))


def test_batch_norm_on_batch_statistics_needs_its_whole_input():
    class Standardise(nn.Module):
        def forward(self, x):
            return F.batch_norm(x, None, None, training=True)

    graph = ew.trace(Standardise(), torch.randn(2, 3, 4, 4))
    assert [layer.kind for layer in graph][1] is OpKind.OTHER


def test_capture_errors_are_named():
    with pytest.raises(ew.EdgeweaveError, match="Unknown trace method 'jit'"):
        ew.trace(nn.ReLU(), torch.zeros(1), method="jit")
    with pytest.raises(ew.EdgeweaveError, match="needs mask as well"):
        ew.trace(_NeedsMask(), torch.zeros(1))


class _NeedsMask(nn.Module):
    def forward(self, x, mask):
        return x * mask


def test_a_worker_busy_with_long_units_is_given_longer():
    assert patience_s(3.0, 0.5) == 3.0 and patience_s(3.0, 2.0) == 6.0
    assert cpu_ticks(os.getpid()) is None or cpu_ticks(os.getpid()) >= 0


Pair = collections.namedtuple("Pair", "scores extra")


class Keyed(nn.Module):
    """Keyword inputs, a count that is no tensor, an optional input left out, and an output
    of the model's own containers: a dict holding a list and a namedtuple."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, tokens, bias=None, mask=None, repeats=1):
        y = self.linear(tokens)
        for _ in range(repeats):
            y = y.relu() * 1.5
        if mask is not None:
            y = y * mask
        return {"hidden": y, "pair": Pair(y.sum(-1), None), "all": [y]}


@pytest.mark.parametrize("method", ["fx", "export"])
def test_keyword_inputs_and_the_models_own_output_containers(method):
    module, tokens, mask = Keyed().eval(), torch.randn(1, 4, 8), torch.rand(1, 4, 8)
    example = {"tokens": tokens, "mask": mask, "repeats": 2}
    with torch.no_grad():
        expected = module(**example)
    graph = ew.trace(module, example, method=method)
    assert graph.inputs == ("tokens", "mask") and graph.fixed == {"repeats": 2}
    made = ew.plan(graph, CLUSTER, planner="equal-split")
    for output in (graph.run(**example), graph.run(tokens, mask),
                   ew.run(made, example).output, ew.run(made, (tokens, mask)).output,
                   ew.run(made, example, backend="local").output):
        assert type(output) is dict and type(output["pair"]) is Pair
        assert type(output["all"]) is list and output["pair"].extra is None
        torch.testing.assert_close(output["hidden"], expected["hidden"])
        torch.testing.assert_close(output["pair"].scores, expected["pair"].scores)
    with pytest.raises(ew.EdgeweaveError, match="traced with repeats=2, fixed in its graph; "
                                                "got 3"):
        ew.run(made, {**example, "repeats": 3})
    with pytest.raises(ew.EdgeweaveError, match="needs input\\(s\\) mask"):
        ew.run(made, {"tokens": tokens})


class Varargs(nn.Module):
    """Inputs through ``*args``: torch.export names them, fx takes them as one tuple."""

    def forward(self, *xs):
        return xs[0] * 2 + xs[1]


def test_inputs_through_star_args_are_captured_by_export():
    a, b = torch.randn(1, 4), torch.randn(1, 4)
    graph = ew.trace(Varargs(), (a, b))
    assert graph.captured_by == "export" and graph.inputs == ("xs_0", "xs_1")
    torch.testing.assert_close(graph.run(a, b), a * 2 + b)
    with pytest.raises(ew.EdgeweaveError, match="takes a forward's \\*args and \\*\\*kwargs"):
        ew.trace(Varargs(), (a, b), method="fx")
