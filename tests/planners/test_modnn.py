"""MoDNN's BODP (seed 003's layer-based baseline) and the relays it rests on: bands in
proportion to device speed, every exchange through the gateway, outputs equal to the
model's (every backend runs it through the registry's parametrised tests)."""

from __future__ import annotations

import pytest

import edgeweave as ew
from edgeweave.errors import PlanError
from edgeweave.planners import plan
from edgeweave.planners.progressive import split_dim
from edgeweave.runtime import run_inline
from edgeweave.units import build_plan, relay, whole
from edgeweave.units.serialize import from_json, to_json
from tests.conftest import assert_equals_model, zoo_graph, zoo_model, zoo_output


@pytest.mark.parametrize("gateway_rows", [True, False])
@pytest.mark.parametrize("model", ["line", "two_branch"])
def test_every_exchange_goes_through_the_gateway_and_the_output_is_the_models(
        model, gateway_rows):
    made = plan(zoo_graph(model), "rpi4b*3@ethernet", planner="bodp",
                gateway_rows=gateway_rows)
    gateway = made.sources[model]
    for unit in made.units:
        for need in unit.needs:
            producer = made.unit(need.unit)
            assert producer.device == unit.device or gateway in (producer.device, unit.device)
    relays = [u for u in made.units if u.relay]
    assert relays and all(u.device == gateway for u in relays)
    bands = [u for u in made.units if not u.relay and u.last in {r.last for r in relays}]
    assert {u.device for u in bands} == ({"rpi4b-0", "rpi4b-1", "rpi4b-2"} if gateway_rows
                                          else {"rpi4b-1", "rpi4b-2"})
    assert made.notes["split_layers"] == len(relays)
    outputs = run_inline(made, zoo_model(model)[1])
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for ours, theirs in zip(outputs, zoo_output(model), strict=True):
        assert_equals_model(ours, theirs)


def test_rows_follow_the_devices_speed_and_only_the_first_layers_are_split():
    graph = zoo_graph("line")
    made = plan(graph, "rpi3+jetson-nano@ethernet", planner="bodp", layers=2)
    split = [u for u in made.units if u.relay]
    assert [u.last for u in split] == [n.name for n in graph if n.kind != "input"][:2]
    first = split[0].last
    rows = {u.device: u.region.shape[2] for u in made.units if u.last == first and not u.relay}
    assert rows["jetson-nano"] > rows["rpi3"]


def test_relays_survive_the_plan_file():
    graph = zoo_graph("two_branch")
    made = plan(graph, "rpi4b*2@wifi", planner="bodp")
    again = from_json(to_json(made), {"two_branch": graph})
    assert again.units == made.units and any(u.relay for u in again.units)


def test_a_relay_of_a_model_output_is_refused_by_name():
    graph = zoo_graph("line")
    parts = [whole(graph, n.name, "rpi4b") for n in graph if n.kind != "input"]
    parts.append(relay(graph, graph.outputs[0], "rpi4b"))
    with pytest.raises(PlanError, match="is a relay of .*not a model output"):
        build_plan({"line": graph}, ew.Cluster.load("rpi4b@ethernet"), parts)


@pytest.mark.parametrize("options, named", [({"layers": 0}, "layers"),
                                            ({"gateway": "moon"}, "gateway"),
                                            ({"gateway_rows": "no"}, "gateway_rows")])
def test_bad_options_are_named(options, named):
    with pytest.raises(PlanError, match=f"'{named}' option of planner 'bodp'"):
        plan(zoo_graph("line"), "rpi4b*2@wifi", planner="bodp", **options)


def test_a_gateway_away_from_the_camera_gets_the_frame_first_and_a_lone_edge_gets_the_rows():
    graph = zoo_graph("line")
    made = plan(graph, "rpi3+edge-server@wifi", planner="bodp", gateway="edge-server",
                gateway_rows=False)
    first = made.unit(made.order["edge-server"][0])
    assert first.relay and first.last == graph.inputs[0]
    assert all(u.device == "rpi3" for u in made.units
               if not u.relay and not made.is_input(u.id) and split_dim(graph, u.last) is not None)
    assert_equals_model(run_inline(made, zoo_model("line")[1]), zoo_output("line")[0])
