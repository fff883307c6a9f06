"""The ``fused`` planner: stacks that need nothing from outside but their inputs, bands that
cover each stack's last layer once, a prediction that is the simulator's, never worse than
one device, and outputs equal to the model's on awkward geometry."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import edgeweave as ew
from edgeweave.errors import PlanError
from edgeweave.planners import plan
from edgeweave.runtime import run_inline
from edgeweave.units import Region, covers
from tests.conftest import assert_equals_model, zoo_graph, zoo_model, zoo_output

CLUSTERS = ["x86-core*2@ethernet", "rpi4b+edge-server@wifi", "rpi4b*2+jetson-nano*2@ethernet"]


def _with_segment_overhead(expression: str, seconds: float) -> ew.Cluster:
    cluster = ew.Cluster.load(expression)
    return dataclasses.replace(cluster, devices=tuple(
        dataclasses.replace(d, segment_overhead_s=seconds) for d in cluster.devices))


@pytest.mark.parametrize("model", ["resnet18", "yolov5s", "googlenet"])
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_stacks_and_bands_are_well_formed(model, cluster):
    graph = zoo_graph(model)
    made = plan(graph, cluster, planner="fused")
    stacks: dict[tuple[str, ...], list[Region]] = {}
    for unit in made.units:
        if made.is_input(unit.id):
            continue
        inside = set(unit.layers)
        for name in unit.layers[:-1]:  # every layer but the last is read inside the stack
            assert set(graph.successors(name)) & inside, (unit, name)
        stacks.setdefault(unit.layers, []).append(unit.region)
    for layers, regions in stacks.items():  # bands cover the last layer, no row twice
        full = Region.full(graph[layers[-1]].output_shape)
        assert covers(regions, full) and sum(r.numel for r in regions) == full.numel
    layers = [name for stack in stacks for name in stack]
    assert sorted(layers) == sorted(n.name for n in graph if n.name not in graph.inputs)


@pytest.mark.parametrize("model", ["resnet18", "yolov5s", "mobilenet_v2"])
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_prediction_is_the_simulators_and_never_worse_than_one_device(model, cluster):
    graph = zoo_graph(model)
    made = plan(graph, cluster, planner="fused")
    predicted = ew.simulate(made).latency_s[0]
    assert made.notes["predicted_ms"] == pytest.approx(1e3 * predicted, rel=1e-12)
    for single in ("local", "remote"):
        assert predicted <= ew.simulate(plan(graph, cluster, planner=single)).latency_s[0] + 1e-9


def test_costlier_hops_give_deeper_stacks():
    graph = zoo_graph("yolov5s")
    cheap = plan(graph, _with_segment_overhead("x86-core*2@ethernet", 0.0), planner="fused")
    dear = plan(graph, _with_segment_overhead("x86-core*2@ethernet", 0.005), planner="fused")
    assert len({u.device for u in dear.units}) == 2  # still worth splitting ...
    assert len(dear.units) < len(cheap.units)  # ... in fewer, deeper stacks


class _Awkward(nn.Module):
    """Odd sizes, strides, kernels, dilation, a skip connection and a pool: bands whose
    receptive fields do not line up with the rows."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 5, stride=2, padding=2)
        self.b = nn.Conv2d(6, 6, 3, padding=2, dilation=2)
        self.c = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.d = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        y = torch.relu(self.b(y)) + y
        y = self.pool(torch.relu(self.c(y)))
        return self.d(y)


@pytest.mark.parametrize("max_depth", [1, 2, 4, 16])
@pytest.mark.parametrize("cluster", ["x86-core*3@ethernet", "rpi3*2+jetson-tx2@4g"])
def test_awkward_geometry_equals_the_model(max_depth, cluster):
    torch.manual_seed(0)
    module = _Awkward().eval()
    x = torch.randn(1, 3, 41, 29)
    graph = ew.trace(module, x, name="awkward")
    made = plan(graph, _with_segment_overhead(cluster, 0.002), planner="fused",
                max_depth=max_depth)
    assert max(len(u.layers) for u in made.units) <= max_depth
    with torch.no_grad():
        expected = module(x)
    assert_equals_model(run_inline(made, x), expected)


def test_several_models_at_once_equal_each_model():
    graphs = [zoo_graph("resnet18"), zoo_graph("line")]
    made = plan(graphs, "x86-core*2@ethernet", planner="fused")
    outputs = run_inline(made, {"resnet18": zoo_model("resnet18")[1], "line": zoo_model("line")[1]})
    for name in ("resnet18", "line"):
        assert_equals_model(outputs[name], zoo_output(name)[0])


def test_a_bad_depth_is_named():
    with pytest.raises(PlanError, match="The 'max_depth' option of planner 'fused' must be"):
        plan(zoo_graph("line"), "x86-core*2@ethernet", planner="fused", max_depth=0)
