"""What a unit costs on its device: the cost model applied to the regions a unit computes.

Below the simulator and the runtime alike, so that both — and the planners that re-plan
around a lost device — price a unit the same way.
"""

from __future__ import annotations

import math

from edgeweave.cost import CostModel
from edgeweave.units.plan import Plan, Unit, layer_regions


def unit_compute_s(plan: Plan, cost: CostModel, unit_id: str, on: str | None = None) -> float:
    """Predicted seconds for a unit on its device (or on device ``on``, which took it):
    each layer's share of its output."""
    return stack_compute_s(plan, cost, plan.unit(unit_id), on)


def stack_compute_s(plan: Plan, cost: CostModel, unit: Unit, on: str | None = None) -> float:
    """``unit_compute_s`` of a unit that need not be one of the plan's (a task run
    unshrunk, ``units.stealing.unshrunk``)."""
    if unit.relay:  # computes nothing
        return 0.0
    graph, device = plan.graphs[unit.graph], plan.cluster.device(on or unit.device)
    total = 0.0
    for name, region in layer_regions(unit, graph).items():
        layer = graph[name]
        whole = region.numel if layer.output_shape is None else math.prod(layer.output_shape)
        total += cost.compute_s(graph, layer, device, min(1.0, region.numel / max(1, whole)))
    return total


def unit_times_s(plan: Plan, cost: CostModel) -> dict[str, float]:
    """Predicted seconds of every unit on its device, with each device's per-segment
    overhead (``Device.segment_overhead_s``) charged to the first unit of each segment —
    what a backend really pays once per segment."""
    from edgeweave.units.segments import segments

    times = {unit.id: unit_compute_s(plan, cost, unit.id) for unit in plan.units}
    for segment in segments(plan):
        times[segment.units[0]] += plan.cluster.device(segment.device).segment_overhead_s
    return times
