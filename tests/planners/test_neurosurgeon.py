"""Neurosurgeon: the min cut is the best predecessor-closed set, found by enumeration."""

from __future__ import annotations

import itertools

import pytest

import edgeweave as ew
from edgeweave.cost import CostModel
from edgeweave.planners import neurosurgeon
from edgeweave.planners.problem import Problem
from tests.conftest import zoo_graph


def _problem(graph, cluster):
    cluster = ew.Cluster.load(cluster)
    return Problem({graph.name: graph}, cluster, CostModel.for_cluster(cluster), {}, {})


def _closed_sets(graph):
    """Every set of layers holding the inputs and closed under predecessors."""
    names = [layer.name for layer in graph if layer.name not in graph.inputs]
    for size in range(len(names) + 1):
        for chosen in itertools.combinations(names, size):
            members = set(chosen) | set(graph.inputs)
            if all(p in members for name in chosen for p in graph.predecessors(name)):
                yield members


@pytest.mark.parametrize("model", ["line", "two_branch"])
@pytest.mark.parametrize("network", ["3g", "4g", "wifi", "ethernet"])
def test_min_cut_equals_brute_force(model, network):
    graph = zoo_graph(model)
    problem = _problem(graph, f"rpi3+jetson-nano@{network}")
    device, server = problem.cluster.devices
    best = min(neurosurgeon.cut_latency(problem, graph, s, device, server)
               for s in _closed_sets(graph))
    found = neurosurgeon.best_cut(problem, graph, device, server)
    assert all(p in found for name in found for p in graph.predecessors(name))
    assert neurosurgeon.cut_latency(problem, graph, found, device, server) == \
        pytest.approx(best, rel=1e-9, abs=1e-6)  # capacities are whole nanoseconds


@pytest.mark.parametrize("model", ["resnet18", "googlenet", "siamese", "yolov5s"])
@pytest.mark.parametrize("network", ["3g", "4g", "wifi"])
def test_never_worse_than_local_or_remote(model, network):
    graph = zoo_graph(model)
    problem = _problem(graph, f"rpi4b+edge-server@{network}")
    device, server = problem.cluster.devices
    found = neurosurgeon.best_cut(problem, graph, device, server)
    latency = neurosurgeon.cut_latency(problem, graph, found, device, server)
    local = neurosurgeon.cut_latency(problem, graph, {l.name for l in graph}, device, server)
    remote = neurosurgeon.cut_latency(problem, graph, set(graph.inputs), device, server)
    assert latency <= min(local, remote) + 1e-12
