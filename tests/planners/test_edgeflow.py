"""Seed 002: layers split into bands over devices equal the model for every op kind, the
LP's rounding covers every row once, memory limits hold, and EdgeFlow is never slower than
its layer-wise and equal-split baselines on yolov5s on the reproduction's clusters."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import edgeweave as ew
from edgeweave.cost import CostModel
from edgeweave.errors import PlanError
from edgeweave.experiments import edgeflow as experiment
from edgeweave.planners import plan
from edgeweave.planners.problem import Problem
from edgeweave.planners.progressive import Progress, bands, round_shares, split_dim
from edgeweave.runtime import run_inline
from edgeweave.units import Part, Region, build_plan, covers
from tests.conftest import assert_equals_model, zoo_graph, zoo_model, zoo_output

DEVICES = ("rpi4b-0", "rpi4b-1", "rpi4b-2")


class EveryKind(nn.Module):
    """Every op kind EdgeFlow splits: convolutions (3x3, strided, 1x1 detection heads),
    pools, element-wise ops, concatenation, nearest upsampling, additions, a global pool
    and linear layers split by channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU())
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.left, self.right = nn.Conv2d(16, 8, 3, padding=1), nn.Conv2d(16, 8, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(16, 12, 1)  # a detection head: 1x1 conv to the anchors' outputs
        self.fc = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5))

    def forward(self, x):
        x = self.stem(x)
        y = self.pool(torch.relu(self.down(x)))
        y = torch.cat([self.left(y), self.right(y)], 1)
        z = self.up(y) + torch.cat([x, x], 1)
        return self.head(z), self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


@pytest.fixture(scope="module")
def every_kind():
    torch.manual_seed(0)
    module = EveryKind().eval()
    example = torch.randn(1, 3, 16, 16)
    return module, example, ew.trace(module, example, name="every_kind")


def _by_bands(graph, rows_of):
    """A plan with every splittable layer in bands over DEVICES (``rows_of(layer, size)``
    gives each device's rows) and every other layer whole on the first device."""
    parts = []
    for layer in graph:
        if layer.kind == "input":
            continue
        dim = split_dim(graph, layer.name)
        rows = [1] if dim is None else rows_of(layer.name, layer.output_shape[dim])
        parts += [Part(graph.name, (layer.name,), region, device) for device, region in
                  bands(graph, layer.name, dim or 0, list(zip(DEVICES, rows)))]
    return build_plan({graph.name: graph}, ew.Cluster.load("rpi4b*3@ethernet"), parts)


def _assert_equal(made, module, example):
    with torch.no_grad():
        expected = module(example)
    for ours, theirs in zip(run_inline(made, example), expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_every_op_kind_is_split(every_kind):
    _, _, graph = every_kind
    kinds = {graph[n].kind for n in (layer.name for layer in graph)
             if split_dim(graph, n) is not None}
    assert {"conv", "pool", "elementwise", "concat", "upsample", "linear",
            "adaptive_pool"} <= {str(k) for k in kinds}


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_any_split_of_every_layer_equals_the_model(every_kind, data):
    module, example, graph = every_kind

    def rows_of(layer, size):  # any three bands, one of them possibly empty
        first = data.draw(st.integers(0, size), label=f"{layer} first")
        second = data.draw(st.integers(0, size - first), label=f"{layer} second")
        return [first, second, size - first - second]

    _assert_equal(_by_bands(graph, rows_of), module, example)


def test_a_device_with_zero_rows_of_every_layer(every_kind):
    module, example, graph = every_kind
    made = _by_bands(graph, lambda layer, size: [size // 2, 0, size - size // 2])
    assert "rpi4b-1" not in {unit.device for unit in made.units}
    _assert_equal(made, module, example)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8), st.integers(1, 700))
def test_rounding_covers_every_row_once(weights, total):
    if sum(weights) == 0:
        weights = [1.0] * len(weights)
    shares = [w / sum(weights) for w in weights]
    rows = round_shares(shares, total)
    assert sum(rows) == total and min(rows) >= 0
    assert all(abs(r - s * total) < 1 + 1e-9 for r, s in zip(rows, shares))


def _problem(graph, cluster):
    loaded = ew.Cluster.load(cluster)
    return Problem({graph.name: graph}, loaded, CostModel.for_cluster(loaded), {}, {})


@pytest.mark.parametrize("model", ["yolov5s", "resnet18"])
def test_edgeflow_plans_cover_every_row_of_every_layer_once(model):
    graph = zoo_graph(model)
    made = plan(graph, "rpi4b*2+jetson-nano*2@ethernet", planner="edgeflow")
    assert made.notes["chosen"] == "progressive LP" and made.notes["split_layers"] > 10
    by_layer: dict[str, list[Region]] = {}
    for unit in made.units:
        by_layer.setdefault(unit.last, []).append(unit.region)
    for name, regions in by_layer.items():
        full = Region.full(graph[name].output_shape)
        assert sum(r.numel for r in regions) == full.numel  # no row twice ...
        assert covers(regions, full)  # ... and none missing
    outputs = run_inline(made, zoo_model(model)[1])
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for ours, theirs in zip(outputs, zoo_output(model), strict=True):
        assert_equals_model(ours, theirs)


def test_the_prediction_is_the_simulators_and_the_placement_clock_agrees():
    made = plan(zoo_graph("yolov5s"), "rpi4b*2+jetson-nano*2@ethernet", planner="edgeflow")
    simulated = ew.simulate(made).latency_s[0] * 1e3
    assert made.notes["predicted_ms"] == pytest.approx(simulated, rel=1e-12)
    assert abs(made.notes["placement_ms"] - simulated) <= 0.02 * simulated


def test_a_device_short_of_memory_gets_no_share_and_footprints_are_recorded():
    graph = zoo_graph("resnet18")
    cluster = ew.Cluster.load({
        "name": "tight", "network": "ethernet",
        "devices": [{"name": "gateway", "preset": "rpi4b"},
                    {"name": "small", "preset": "jetson-nano", "memory_bytes": 30_000_000},
                    {"name": "big", "preset": "jetson-nano"}]})
    made = plan(graph, cluster, planner="edgeflow")
    footprint = made.notes["footprint_bytes"]
    assert footprint["small"] <= 30_000_000 < footprint["big"]
    held = {layer for unit in made.units if unit.device == "small" for layer in unit.layers}
    assert sum(graph[layer].param_bytes for layer in held) < 30_000_000
    assert held  # it still computes what fits


def test_no_device_with_the_memory_is_named():
    cluster = ew.Cluster.load({
        "name": "tiny", "network": "ethernet",
        "devices": [{"name": "a", "preset": "rpi3", "memory_bytes": 2_000_000},
                    {"name": "b", "preset": "rpi3", "memory_bytes": 2_000_000}]})
    with pytest.raises(PlanError, match="No device of cluster 'tiny' has the memory for "
                                        "layer '.*' of 'resnet18'"):
        plan(zoo_graph("resnet18"), cluster, planner="edgeflow")


@pytest.mark.parametrize("cluster", experiment.clusters())
def test_never_slower_than_its_layerwise_and_equal_split_baselines_on_yolov5s(cluster):
    graph = zoo_graph("yolov5s")
    latency = {name: ew.simulate(plan(graph, cluster, planner=name)).latency_s[0]
               for name in ("edgeflow", "heft", "equal-split")}
    assert latency["edgeflow"] <= min(latency["heft"], latency["equal-split"]) + 1e-9


@pytest.mark.parametrize("overhead_s", [0.0, 2e-3])
def test_progress_times_a_band_split_like_the_simulator(overhead_s):
    graph = zoo_graph("two_branch")
    loaded = ew.Cluster.load("rpi4b*3@ethernet")
    loaded = dataclasses.replace(loaded, devices=tuple(
        dataclasses.replace(d, segment_overhead_s=overhead_s) for d in loaded.devices))
    problem = Problem({graph.name: graph}, loaded, CostModel.for_cluster(loaded), {}, {})
    progress = Progress(problem)
    for layer in problem.layers(graph):
        dim = split_dim(graph, layer)
        size = graph[layer].output_shape[dim] if dim is not None else 1
        rows = [size] if dim is None else round_shares([0.5, 0.3, 0.2], size)
        progress.place(graph, layer, bands(graph, layer, dim or 0, list(zip(DEVICES, rows))))
    made = progress.plan("manual")
    assert made.notes["placement_ms"] == pytest.approx(
        ew.simulate(made).latency_s[0] * 1e3, rel=1e-9)


def test_the_reproduction_writes_its_page_and_gantt_chart(tmp_path):
    result = experiment.reproduce(model_names=["yolov5s"],
                                  cluster_names=[experiment.GANTT[1], "rpi4b*2+jetson-nano@wifi"])
    page = tmp_path / "edgeflow.md"
    result.write(page)
    text = page.read_text()
    assert "| yolov5s | `rpi4b*3+jetson-nano*2+jetson-tx2@ethernet` |" in text
    assert "40.2%" in text and "never slower than HEFT or equal split" in text
    for picture in ("edgeflow-gantt.png", "edgeflow-map.png"):
        assert (tmp_path / picture).read_bytes().startswith(b"\x89PNG")
        assert f"]({picture})" in text
    for row in result.to_dict():
        assert set(row["reduction"]) == set(experiment.BASELINES)


@pytest.mark.parametrize("model", ew.models.names())
def test_every_zoo_model_split_over_four_devices_equals_the_model(model):
    made = plan(zoo_graph(model), "rpi4b*2+jetson-nano*2@ethernet", planner="edgeflow")
    outputs = run_inline(made, zoo_model(model)[1])
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for ours, theirs in zip(outputs, zoo_output(model), strict=True):
        assert_equals_model(ours, theirs)


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_split_plans_run_on_the_distributed_runtime(backend, request):
    if backend == "ray":
        request.getfixturevalue("ray_instance")
    made = plan([zoo_graph("line"), zoo_graph("two_branch")], "rpi4b*3@ethernet",
                planner="edgeflow")
    assert made.notes["split_layers"] > 5
    inputs = {"line": zoo_model("line")[1], "two_branch": zoo_model("two_branch")[1]}
    result = ew.run(made, inputs, backend=backend, frames=2)
    for name in inputs:
        for output in result.outputs:
            torch.testing.assert_close(output[name], zoo_output(name)[0])
