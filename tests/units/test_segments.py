"""Segments: a device's consecutive units that talk to other devices only at their ends."""

from __future__ import annotations

import torch

import edgeweave as ew
from edgeweave.units import execution_order
from edgeweave.units.segments import segments, step_units
from tests.conftest import zoo_graph, zoo_model, zoo_output


def _check(plan):
    found = segments(plan)
    assert sorted(u for s in found for u in s.units) == sorted(u.id for u in plan.units)
    device_of = {unit.id: unit.device for unit in plan.units}
    position = {unit: i for i, unit in enumerate(execution_order(plan))}
    for segment in found:
        assert {device_of[u] for u in segment.units} == {segment.device}
        for unit in segment.units[1:]:  # only the first reads from other devices
            assert all(device_of[n.unit] == segment.device for n in plan.unit(unit).needs)
        for unit in segment.units[:-1]:  # only the last sends to them
            assert all(device_of[c] == segment.device for c, _ in plan.forwarding[unit])
        order = plan.order[segment.device]  # a run of the device's order
        start = order.index(segment.units[0])
        assert segment.units == order[start:start + len(segment.units)]
        assert step_units(plan, segment.device, f"{segment.units[0]}..{segment.units[-1]}") \
            == segment.units
        assert [position[u] for u in segment.units] == sorted(position[u] for u in segment.units)
    return found


def test_a_whole_model_on_one_device_is_one_segment_and_equals_the_model():
    plan = ew.plan(zoo_graph("resnet18"), "rpi4b", planner="local")
    assert len(_check(plan)) == 1
    torch.testing.assert_close(ew.run(plan, zoo_model("resnet18")[1]).output,
                               zoo_output("resnet18")[0], rtol=1e-4, atol=1e-4)


def test_split_plans_segment_at_every_hop():
    plan = ew.plan(zoo_graph("yolov5s"), "rpi4b*2+jetson-nano@ethernet", planner="edgeflow")
    found = _check(plan)
    assert 1 < len(found) < len(plan.units)
    for ours, theirs in zip(ew.run(plan, zoo_model("yolov5s")[1]).output, zoo_output("yolov5s"),
                            strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
