"""Workloads: each model's stream (source, arrival times, weight, deadline) travels with the
plan, the simulator and the backends time each model's frames from its own arrival, and
the objective every planner minimises is the workload's."""

from __future__ import annotations

import dataclasses

import pytest

import edgeweave as ew
from edgeweave.errors import EdgeweaveError, PlanError
from edgeweave.planners import plan
from edgeweave.planners.bound import lower_bound_s
from edgeweave.planners.problem import Problem
from edgeweave.cost import CostModel
from edgeweave.simulation import predicted_s, simulate
from edgeweave.units import Stream, objective_s, serialize
from tests.conftest import assert_equals_model, zoo_graph, zoo_model, zoo_output

CLUSTER = "rpi4b*2+edge-server@ethernet"
GRAPHS = ["line", "two_branch"]


def _inputs():
    return {name: zoo_model(name)[1] for name in GRAPHS}


@pytest.mark.parametrize("stream, message", [
    (dict(source="a", period_s=-1.0), "must be >= 0"),
    (dict(source="a", arrivals_s=(0.2, 0.1)), "must not decrease"),
    (dict(source="a", arrivals_s=(0.0,), period_s=0.1), "give one"),
    (dict(source="a", weight=0.0), "must be > 0"),
    (dict(source="a", deadline_s=float("nan")), "not a finite number"),
])
def test_a_bad_stream_is_named(stream, message):
    with pytest.raises(EdgeweaveError, match=message):
        Stream(**stream)


def test_a_stream_from_a_dict_names_unknown_keys_and_round_trips():
    with pytest.raises(EdgeweaveError, match="'source' required"):
        Stream.from_dict({"source": "a", "every": 2})
    stream = Stream("rpi4b-1", period_s=0.1, offset_s=0.02, weight=2.0, deadline_s=0.3)
    assert Stream.from_dict(stream.to_dict()) == stream
    assert [stream.arrival_s(f) for f in range(3)] == pytest.approx([0.02, 0.12, 0.22])
    with pytest.raises(EdgeweaveError, match="frame 2 has none"):
        Stream("a", arrivals_s=(0.0, 0.5)).arrival_s(2)


def test_the_plan_front_door_checks_the_workload():
    graphs = [zoo_graph(n) for n in GRAPHS]
    with pytest.raises(EdgeweaveError, match="names model 'other'"):
        plan(graphs, CLUSTER, workload={"other": {"period_s": 1.0}})
    with pytest.raises(EdgeweaveError, match="'moon', which is not a device"):
        plan(graphs, CLUSTER, workload={"line": {"source": "moon"}})
    with pytest.raises(EdgeweaveError, match="'source' required"):
        plan(graphs, CLUSTER, workload={"line": {"every": 1.0}})


def test_each_models_frames_are_timed_from_their_own_arrival():
    graphs = [zoo_graph(n) for n in GRAPHS]
    alone = plan(graphs, CLUSTER, planner="local", sources={"two_branch": "rpi4b-1"})
    later = plan(graphs, CLUSTER, planner="local", workload={
        "two_branch": Stream("rpi4b-1", period_s=0.5, offset_s=0.25), "line": {"period_s": 0.1}})
    assert later.streams["line"] == Stream("rpi4b-0", period_s=0.1)
    base, shifted = simulate(alone, frames=3), simulate(later, frames=3)
    assert shifted.model_arrival_s["two_branch"] == pytest.approx((0.25, 0.75, 1.25))
    assert shifted.model_arrival_s["line"] == pytest.approx((0.0, 0.1, 0.2))
    # each model alone on its own device: shifting one's arrivals changes no latency of its
    # frames (apart from queueing, which the long period removes) nor the other's first
    assert shifted.model_latency_s()["two_branch"][0] == pytest.approx(
        base.model_latency_s()["two_branch"][0])
    assert all(e.start_s >= 0.25 - 1e-12 for e in shifted.events
               if e.kind == "compute" and alone.unit(e.unit).graph == "two_branch")
    # a round spans its first arrival to its last completion
    assert shifted.arrival_s[0] == 0.0
    assert shifted.done_s[0] == max(d[0] for d in shifted.model_done_s.values())


def test_the_workload_travels_in_the_plan_file_and_is_checked(tmp_path):
    graphs = [zoo_graph(n) for n in GRAPHS]
    made = plan(graphs, CLUSTER, planner="heft", workload={
        "two_branch": {"source": "rpi4b-1", "deadline_s": 0.05, "weight": 2.0},
        "line": {"arrivals_s": [0.0, 0.01, 0.5]}})
    serialize.save(made, tmp_path / "plan.json")
    loaded = serialize.load(tmp_path / "plan.json", {g.name: g for g in graphs})
    assert loaded.streams == made.streams
    with pytest.raises(PlanError, match="input units are on 'rpi4b-1'"):
        ew.units.validate(dataclasses.replace(made, workload={
            "two_branch": Stream("edge-server")}))


def test_the_objective_weighs_latency_and_charges_deadline_overruns():
    workload = {"a": Stream("x", weight=2.0), "b": Stream("x", deadline_s=0.1)}
    assert objective_s({"a": 0.1, "b": 0.15}, workload) == pytest.approx(0.2 + 0.05)
    graphs = [zoo_graph(n) for n in GRAPHS]
    made = plan(graphs, CLUSTER, planner="local", workload={
        "line": {"deadline_s": 1e-6}, "two_branch": {"source": "rpi4b-1", "deadline_s": 10.0}})
    metrics = simulate(made, frames=2).metrics(made.streams)
    assert metrics["models"]["line"]["deadline_met"] == 0.0
    assert metrics["models"]["two_branch"]["deadline_met"] == 1.0
    assert predicted_s(made) > max(simulate(made).latency_s)  # the overrun is charged


@pytest.mark.parametrize("planner", ["local", "heft", "edgeflow", "po"])
def test_no_plan_beats_the_bound_with_offsets_and_weights(planner):
    graphs = {n: zoo_graph(n) for n in GRAPHS}
    cluster = ew.Cluster.load(CLUSTER)
    workload = {"line": Stream("rpi4b-0", offset_s=0.01, weight=3.0),
                "two_branch": Stream("rpi4b-1")}
    made = plan(list(graphs.values()), cluster, planner=planner, workload=workload,
                **({"particles": 8, "loops": 10} if planner == "po" else {}))
    bound = lower_bound_s(Problem(graphs, cluster, CostModel.for_cluster(cluster), {}, {},
                                  workload))
    assert 0 < bound <= predicted_s(made) + 1e-12


def test_memetic_fitness_is_the_workloads_objective():
    graphs = [zoo_graph(n) for n in GRAPHS]
    made = plan(graphs, CLUSTER, planner="mo", particles=8, loops=10, workload={
        "line": {"weight": 4.0, "offset_s": 0.002}, "two_branch": {"source": "rpi4b-1"}})
    assert made.notes["fitness_ms"] == pytest.approx(made.notes["predicted_ms"], rel=0.02)


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_each_models_frames_run_at_their_times_on_workers(backend, request):
    if backend == "ray":
        request.getfixturevalue("ray_instance")
    graphs = [zoo_graph(n) for n in GRAPHS]
    # seed 000's memetic plan of both models: each model's pieces on both devices
    made = plan(graphs, "rpi4b*2@ethernet", planner="mo", particles=8, loops=10, workload={
        "line": {"period_s": 0.05}, "two_branch": {"source": "rpi4b-1", "offset_s": 0.03}})
    assert all({u.device for u in made.units if u.graph == name} == {"rpi4b-0", "rpi4b-1"}
               for name in GRAPHS)
    result = ew.run(made, _inputs(), backend=backend, frames=3)
    for outputs in result.outputs:
        for name in GRAPHS:
            assert_equals_model(outputs[name], zoo_output(name)[0])
    timeline = result.timeline
    for name, due in {"line": (0.0, 0.05, 0.10), "two_branch": (0.03, 0.03, 0.03)}.items():
        # a frame arrives no earlier than its time (the driver sends it then; a Ray round
        # goes when its last model is due, the others counted from their own times)
        assert all(a >= d - 1e-3 for a, d in zip(timeline.model_arrival_s[name], due))
        assert all(latency > 0 for latency in timeline.model_latency_s()[name])
