"""Cost models: the analytic roofline, measured profiles, transfers."""

from __future__ import annotations

import dataclasses

import pytest

from edgeweave.cluster import load as load_cluster
from edgeweave.cost import CostModel, load, measure, save
from edgeweave.errors import EdgeweaveError
from edgeweave.graph import OpKind
from tests.conftest import zoo_graph, zoo_model


def test_analytic_roofline_per_layer():
    graph = zoo_graph("vgg16")
    device = load_cluster("rpi4b").devices[0]
    cost = CostModel()
    conv = next(layer for layer in graph if layer.kind is OpKind.CONV)
    fc = next(layer for layer in graph if layer.kind is OpKind.LINEAR)
    assert cost.compute_s(graph, conv, device) == pytest.approx(
        device.layer_overhead_s + conv.flops / device.flops_per_s)
    # VGG's first fully connected layer reads 411 MB of weights: bound by memory
    assert cost.compute_s(graph, fc, device) == pytest.approx(
        device.layer_overhead_s
        + (fc.input_bytes + fc.output_bytes + fc.param_bytes) / device.memory_bytes_per_s)
    half = cost.compute_s(graph, conv, device, share=0.5)
    assert half == pytest.approx(device.layer_overhead_s + 0.5 * conv.flops / device.flops_per_s)
    assert cost.compute_s(graph, graph[graph.inputs[0]], device) == 0.0
    with pytest.raises(EdgeweaveError, match="must lie in \\[0, 1\\]"):
        cost.compute_s(graph, conv, device, share=1.5)


def test_a_faster_device_is_faster_on_every_layer():
    graph = zoo_graph("resnet18")
    cluster = load_cluster("rpi3+rpi4b+jetson-tx2+edge-server@wifi")
    cost = CostModel.for_cluster(cluster)
    totals = [sum(cost.compute_s(graph, layer, d) for layer in graph) for d in cluster.devices]
    assert totals == sorted(totals, reverse=True)


def test_transfer_time():
    link = load_cluster("rpi4b+edge-server@wifi").links[0]
    assert CostModel.transfer_s(1_000_000, link) == pytest.approx(0.002 + 8e6 / 18.88e6)
    assert CostModel.transfer_s(1_000_000, None) == 0.0
    assert CostModel.transfer_s(0, link) == 0.0


def test_profiled_device_uses_scaled_measured_times(tmp_path):
    graph = zoo_graph("two_branch")
    _, inputs = zoo_model("two_branch")
    measured = measure(graph, inputs, repeats=2, warmup=1)
    assert set(measured.layer_s) == set(graph.topological_order())
    assert all(t > 0 for name, t in measured.layer_s.items() if name not in graph.inputs)
    path = tmp_path / "host.json"
    save([measured], path)
    assert load(path)[graph.fingerprint].layer_s == measured.layer_s
    cluster = load_cluster({"devices": [{"name": "slow", "preset": "rpi4b",
                                         "profile": str(path), "profile_scale": 3.0}]})
    cost = CostModel.for_cluster(cluster)
    layer = graph["cat"]
    assert cost.compute_s(graph, layer, cluster.devices[0], 0.5) == pytest.approx(
        0.5 * 3.0 * measured.layer_s["cat"])
    with pytest.raises(EdgeweaveError, match="holds no times for model 'line'"):
        cost.compute_s(zoo_graph("line"), zoo_graph("line")["fc"], cluster.devices[0])


def test_bad_profile_files_are_named(tmp_path):
    with pytest.raises(EdgeweaveError, match="No profile file"):
        load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{\"models\": {\"x\": {}}}")
    with pytest.raises(EdgeweaveError, match="malformed"):
        load(tmp_path / "bad.json")
    with pytest.raises(EdgeweaveError, match="repeats must be >= 1"):
        measure(zoo_graph("line"), zoo_model("line")[1], repeats=0)


def test_fingerprint_tells_graphs_apart():
    line = zoo_graph("line")
    assert line.fingerprint == dataclasses.replace(line, name="renamed").fingerprint
    assert line.fingerprint != zoo_graph("two_branch").fingerprint
