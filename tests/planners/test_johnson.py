"""Extended Johnson against the seed's toy example, brute force, Theorem 3 and the 5/3 bound."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import edgeweave as ew
from edgeweave.cost import CostModel
from edgeweave.errors import GraphError
from edgeweave.planners.johnson import (decompose, extended_johnson, makespan,
                                        multipath_plan, optimal_order, path_stages,
                                        stage_two_dominated)
from edgeweave.planners.problem import Problem
from edgeweave.runtime import run_inline
from tests.conftest import zoo_graph, zoo_model, zoo_output

# seed 001's toy example: four paths as (local compute, transmission, remote compute)
TOY = [(3, 2, 5), (3, 2, 2), (4, 3, 3), (4, 2, 3)]


def test_the_seed_toy_example():
    order = extended_johnson(TOY)
    assert order == [0, 2, 3, 1]  # the slides' H = {1}, L = {3, 4, 2}
    assert stage_two_dominated(TOY)  # max(min p1, min p3) = 3 >= max p2 = 3
    assert makespan(TOY, order) == 18
    assert makespan(TOY, optimal_order(TOY)) == 18


def test_makespan_by_hand():
    # device 0-3, 3-7; link 3-5, 7-10; server 5-10, 10-13
    assert makespan(TOY, [0, 2]) == 13
    assert makespan([], []) == 0


stage = st.integers(min_value=0, max_value=20)
instances = st.lists(st.tuples(stage, stage, stage), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(instances)
def test_never_better_than_optimal_and_within_five_thirds(paths):
    best = makespan(paths, optimal_order(paths))
    ours = makespan(paths, extended_johnson(paths))
    assert best <= ours <= 5 / 3 * best + 1e-9
    assert sorted(extended_johnson(paths)) == list(range(len(paths)))


@settings(max_examples=200, deadline=None)
@given(instances)
def test_optimal_when_stage_two_is_dominated(paths):
    if stage_two_dominated(paths):
        assert makespan(paths, extended_johnson(paths)) == makespan(paths, optimal_order(paths))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(stage, st.just(0), stage), min_size=1, max_size=6))
def test_two_machine_johnson_is_optimal(paths):
    # with no transmission the problem is Johnson's two-machine flow shop
    assert makespan(paths, extended_johnson(paths)) == makespan(paths, optimal_order(paths))


@pytest.mark.parametrize("name, count", [("two_branch", 2), ("siamese", 2),
                                         ("multistream", 3)])
def test_multi_path_models_decompose_into_disjoint_chains(name, count):
    graph = zoo_graph(name)
    parts = decompose(graph)
    assert len(parts.paths) == count
    every = [*parts.head, *(layer for path in parts.paths for layer in path), *parts.tail]
    assert sorted(every) == sorted(layer.name for layer in graph)  # each layer exactly once
    for path in parts.paths:
        for before, after in zip(path, path[1:]):
            assert graph.successors(before) == (after,) and graph.predecessors(after) == (before,)
    for chain in (parts.head, parts.tail):
        for before, after in zip(chain, chain[1:]):
            assert after in graph.successors(before)


def test_only_multi_path_graphs_decompose():
    with pytest.raises(GraphError, match="'resnet18' is dag, not multi-path"):
        decompose(zoo_graph("resnet18"))


def _problem(graph, cluster):
    loaded = ew.Cluster.load(cluster)
    return Problem({graph.name: graph}, loaded, CostModel.for_cluster(loaded), {}, {})


@pytest.mark.parametrize("name", ["two_branch", "siamese", "multistream"])
@pytest.mark.parametrize("network", ["3g", "4g", "wifi"])
def test_multi_path_plans_equal_the_model_and_the_simulator_agrees(name, network):
    graph = zoo_graph(name)
    problem = _problem(graph, f"rpi4b+edge-server@{network}")
    plan, chosen = multipath_plan(problem, graph)
    torch.testing.assert_close(run_inline(plan, zoo_model(name)[1]), zoo_output(name)[0],
                               rtol=1e-4, atol=1e-4)
    # the simulator's latency is the head, the paths' makespan, the tail and the way back —
    # a little less, since a link carries the next transfer while the last one is still in
    # flight (latency), and a layer may read only part of the tensor that crosses a cut
    device, server = problem.source, problem.fastest()
    parts = decompose(graph)
    link = problem.cluster.link(device.name, server.name)
    head = sum(problem.cost.compute_s(graph, graph[n], device) for n in parts.head)
    tail = sum(problem.cost.compute_s(graph, graph[n], server) for n in parts.tail)
    back = sum(problem.cost.transfer_s(graph[n].output_bytes, link) for n in graph.outputs)
    simulated = ew.simulate(plan).latency_s[0]
    predicted = head + chosen.makespan_s + tail + back
    assert predicted - len(parts.paths) * link.latency_s - 0.02 * predicted <= simulated
    assert simulated <= predicted + 1e-9
    # no single path's cut can be changed for a shorter makespan
    for i, path in enumerate(parts.paths):
        for k in range(1 if graph[path[0]].kind == "input" else 0, len(path) + 1):
            cuts = [*chosen.cuts[:i], k, *chosen.cuts[i + 1:]]
            stages = [path_stages(problem, graph, parts, j, c, device, server)
                      for j, c in enumerate(cuts)]
            assert makespan(stages, extended_johnson(stages)) >= chosen.makespan_s - 1e-12
