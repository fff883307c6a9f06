"""Re-planning around a lost device keeps every other unit where it was and still gives
the model's outputs; it fails clearly when no survivor has the memory."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import edgeweave as ew
from edgeweave.graph import OpKind
from edgeweave.planners.recover import without
from edgeweave.runtime import run_inline
from edgeweave.units import build_plan, whole
from tests.conftest import zoo_graph, zoo_model, zoo_output


def _spread(cluster):
    graph = zoo_graph("two_branch")
    layers = [layer for layer in graph if layer.kind is not OpKind.INPUT]
    parts = [whole(graph, layer.name, cluster.names[i % len(cluster.names)])
             for i, layer in enumerate(layers)]
    return build_plan({"two_branch": graph}, cluster, parts)


@pytest.mark.parametrize("lost", [{"rpi4b-0"}, {"rpi4b-1"}, {"rpi4b-0", "edge-server"}])
def test_units_of_lost_devices_move_to_one_survivor(lost):
    plan = _spread(ew.Cluster.load("rpi4b*2+edge-server@wifi"))
    after = without(plan, lost)
    before = {u.id: u for u in plan.units}
    moved = {uid for d in lost for uid in plan.order[d]}
    adopters = {u.device for u in after.units if u.id in moved}
    assert len(adopters) == 1 and not adopters & lost
    for unit in after.units:
        if unit.id not in moved:
            assert unit == before[unit.id]
    for device in lost:
        assert after.order[device] == ()
    torch.testing.assert_close(run_inline(after, zoo_model("two_branch")[1]),
                               zoo_output("two_branch")[0])


def test_no_survivor_with_memory_enough_is_a_plan_error():
    cluster = ew.Cluster.load("rpi4b*2+edge-server@wifi")
    plan = _spread(cluster)
    tiny = dataclasses.replace(cluster, devices=tuple(
        dataclasses.replace(d, memory_bytes=40_000) for d in cluster.devices))
    plan = dataclasses.replace(plan, cluster=tiny)
    with pytest.raises(ew.EdgeweaveError, match="No surviving device can take over the units "
                                                "of edge-server"):
        without(plan, {"edge-server"})
    with pytest.raises(ew.EdgeweaveError, match="has no device"):
        without(plan, {"jetson"})
