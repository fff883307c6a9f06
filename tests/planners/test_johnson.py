"""Seed 001: Extended Johnson against the toy example, brute force, Theorem 3 and the 5/3
bound; the DAG conversion; the cut search against the exact reference; the planner."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import edgeweave as ew
from edgeweave.cost import CostModel
from edgeweave.planners import plan
from edgeweave.planners.johnson import (Stretch, build, convert, extended_johnson, makespan,
                                        optimal_order, stage_two_dominated)
from edgeweave.planners.problem import Problem
from edgeweave.runtime import run_inline
from edgeweave.units.serialize import from_json, to_json
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


MULTI_PATH = {"two_branch": 2, "siamese": 2, "multistream": 3}
DAGS = ["alexnet_p", "googlenet", "resnet18", "inception_resnet_v2", "yolov5s"]


@pytest.mark.parametrize("name, count", MULTI_PATH.items())
def test_a_multi_path_graph_is_one_stretch_of_disjoint_chains(name, count):
    graph = zoo_graph(name)
    (parts,) = convert(graph)
    assert len(parts.paths) == count
    every = [*parts.head, *(layer for path in parts.paths for layer in path), *parts.tail]
    assert sorted(every) == sorted(layer.name for layer in graph)  # each layer exactly once
    for path in parts.paths:
        for before, after in zip(path, path[1:]):
            assert graph.successors(before) == (after,) and graph.predecessors(after) == (before,)


def test_a_line_has_nothing_to_convert():
    assert convert(zoo_graph("line")) == ()


@pytest.mark.parametrize("name", [*MULTI_PATH, *DAGS])
def test_conversion_replicates_layers_into_paths_from_fork_to_join(name):
    graph = zoo_graph(name)
    stretches = convert(graph)
    assert stretches
    for parts, full in zip(stretches, convert(graph, max_paths=10**5), strict=True):
        inner = set(parts.owner)
        assert sorted([*parts.head, *inner, *parts.tail]) == sorted(l.name for l in graph)
        assert parts.fork is None or parts.fork in graph.cut_points
        assert not parts.tail or parts.tail[0] in graph.cut_points
        position = {n: i for i, n in enumerate(graph.topological_order())}
        enumerated = len(full.paths) <= 8  # else one path per branch leaving the fork
        assert parts.paths == full.paths if enumerated else len(parts.paths) < len(full.paths)
        for path in parts.paths:
            assert list(path) == sorted(path, key=position.__getitem__)
            if not path:  # the fork reads straight into the join
                assert parts.tail[0] in graph.successors(parts.fork)
                continue
            assert path[0] in (graph.successors(parts.fork) if parts.fork else graph.inputs)
            if enumerated:
                for before, after in zip(path, path[1:]):
                    assert after in graph.successors(before)
                assert any(s not in inner for s in graph.successors(path[-1])) or \
                    path[-1] in graph.outputs


def test_yolov5s_neck_has_too_many_paths_to_replicate():
    graph = zoo_graph("yolov5s")
    neck = convert(graph)[-1]
    assert not neck.tail  # it ends at the three detection outputs: no cut point after it
    assert len(neck.paths) == len(graph.successors(neck.fork))  # one path per branch
    assert len(convert(graph, max_paths=10_000)[-1].paths) > 4000  # the full replication


def _problem(graph, cluster):
    loaded = ew.Cluster.load(cluster)
    return Problem({graph.name: graph}, loaded, CostModel.for_cluster(loaded),
                   {"max_paths": 8}, {})


def _stretch(problem, graph, parts):
    return Stretch(problem, graph, parts, problem.source_of(graph), problem.fastest())


@pytest.mark.parametrize("name", [*MULTI_PATH, *DAGS])
def test_a_cut_through_a_converted_stretch_runs_every_layer_once_equal_to_the_model(name):
    graph = zoo_graph(name)
    problem = _problem(graph, "rpi4b+edge-server@4g")
    stretches = convert(graph)
    parts = stretches[len(stretches) // 2]
    stretch = _stretch(problem, graph, parts)
    cuts = [max(stretch.lowest(i), (len(path) + 1) // 2) for i, path in enumerate(parts.paths)]
    made = build(problem, {graph.name: stretch.choice(stretch.schedule(cuts))})
    computed = [layer for unit in made.units for layer in unit.layers]
    assert sorted(computed) == sorted(layer.name for layer in graph)
    where = {layer: unit.device for unit in made.units for layer in unit.layers}
    device, server = problem.source_of(graph).name, problem.fastest().name
    assert {where[n] for n in parts.head} <= {device} and {where[n] for n in parts.tail} <= {server}
    assert device in {where[n] for n in parts.owner}  # the cut really goes through it
    for layer in graph:  # nothing comes back from the server
        if where[layer.name] == device:
            assert all(where[p] == device for p in layer.inputs)
    outputs = run_inline(made, zoo_model(name)[1])
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for ours, theirs in zip(outputs, zoo_output(name), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", MULTI_PATH)
@pytest.mark.parametrize("network", ["3g", "4g", "wifi"])
def test_the_simulator_agrees_with_the_stage_times(name, network):
    graph = zoo_graph(name)
    problem = _problem(graph, f"rpi4b+edge-server@{network}")
    (parts,) = convert(graph)
    stretch = _stretch(problem, graph, parts)
    chosen = stretch.search()
    made = build(problem, {graph.name: stretch.choice(chosen)})
    torch.testing.assert_close(run_inline(made, zoo_model(name)[1]), zoo_output(name)[0],
                               rtol=1e-4, atol=1e-4)
    # the simulator's latency is the head, the paths' makespan, the tail and the way back —
    # a little less, since a link carries the next transfer while the last one is still in
    # flight (latency), and a layer may read only part of the tensor that crosses a cut
    link = problem.cluster.link(problem.source_of(graph).name, problem.fastest().name)
    predicted = stretch.latency_s(chosen)
    simulated = ew.simulate(made).latency_s[0]
    assert predicted - len(parts.paths) * link.latency_s - 0.02 * predicted <= simulated
    assert simulated <= predicted + 1e-9
    # no single path's cut can be changed for a shorter makespan
    for i, path in enumerate(parts.paths):
        for k in range(stretch.lowest(i), len(path) + 1):
            cuts = [*chosen.cuts[:i], k, *chosen.cuts[i + 1:]]
            assert stretch.schedule(cuts).makespan_s >= chosen.makespan_s - 1e-12


def _small_stretches():
    return [pytest.param(graph, parts, id=f"{name}-{parts.fork}")
            for name in ["two_branch", "alexnet_p", "resnet18", "googlenet"]
            for graph in [zoo_graph(name)] for parts in convert(graph)[:2]]


@pytest.mark.parametrize("graph, parts", _small_stretches())
@pytest.mark.parametrize("network", ["3g", "4g", "wifi"])
def test_the_cut_search_against_the_exact_reference(graph, parts, network):
    stretch = _stretch(_problem(graph, f"rpi4b+edge-server@{network}"), graph, parts)
    exact, ours = stretch.exact(), stretch.search()
    assert exact.makespan_s <= ours.makespan_s <= 5 / 3 * exact.makespan_s
    # Theorem 4 on the optimum's cuts: Extended Johnson's order within 5/3 of the best order
    assert stretch.schedule(exact.cuts).makespan_s <= 5 / 3 * exact.makespan_s + 1e-12


@pytest.mark.parametrize("name", ["alexnet_p", "googlenet", "siamese", "multistream"])
@pytest.mark.parametrize("network", ["3g", "4g", "wifi"])
def test_the_planner_is_never_worse_than_the_baselines(name, network):
    graph, cluster = zoo_graph(name), f"rpi4b+edge-server@{network}"
    ours = ew.simulate(plan(graph, cluster, planner="johnson")).latency_s[0]
    for baseline in ["local", "remote", "neurosurgeon"]:
        assert ours <= ew.simulate(plan(graph, cluster, planner=baseline)).latency_s[0] + 1e-12


def test_the_planner_reports_its_schedule():
    made = plan(zoo_graph("multistream"), "rpi4b+edge-server@4g", planner="johnson")
    notes = made.notes
    assert notes["chosen"] == "extended-johnson"  # pipelining the streams pays on 4G
    assert notes["simulated_ms"]["extended-johnson"] < notes["simulated_ms"]["neurosurgeon"]
    report = notes["models"]["multistream"]
    assert sorted(report["order"]) == [0, 1, 2] and len(report["cuts"]) == 3
    assert report["theorem3"] == stage_two_dominated(report["stages_ms"])
    assert from_json(to_json(made), made.graphs).notes == notes


class _LongBranches(torch.nn.Module):
    """Two branches of 300 layers each between a fork and a join: a stretch whose every
    cut of every path, each trial linear in the stretch, took minutes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        a = b = self.conv(x)
        for _ in range(300):
            a = a * 1.001
            b = b + 0.001
        return a + b


def test_a_stretch_of_long_paths_is_searched_coarse_to_fine(monkeypatch):
    module, x = _LongBranches().eval(), torch.randn(1, 3, 16, 16)
    graph = ew.trace(module, x)
    trials = []
    original = Stretch.schedule
    monkeypatch.setattr(Stretch, "schedule", lambda self, cuts: trials.append(cuts)
                        or original(self, cuts))
    made = plan(graph, "rpi3+edge-server@wifi", planner="johnson")
    # every cut of both paths, per pass of each of three descents, would be 3 x 602 a pass
    assert len(trials) < 3 * 602
    report = made.notes["models"][graph.name]
    assert "coarse to fine" in report.get("search", "") or report.get("single_cut")
    with torch.no_grad():
        torch.testing.assert_close(run_inline(made, x), module(x))
    stretch = _stretch(_problem(graph, "rpi3+edge-server@wifi"), graph, convert(graph)[0])
    assert stretch.coarse and len(stretch._cuts(0, 0, 150)) < 100
