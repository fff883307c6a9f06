"""Segments: the pieces of a plan a device executes without talking to another device.

A segment is a maximal run of one device's consecutive units that receives from other
devices only at its start and sends to other devices only at its end. Every backend runs
a segment as one step (whole-tensor layers as one compiled ``torch.fx`` module), so the
cost of a hop — a message, a wake-up, a copy — is paid once per segment, not per unit;
the simulator charges a device's per-segment cost the same way. The plan's schedule is
unchanged: only the hops between a device's own units are gone.

Text form: ``edge-server[u1..u42]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeweave.units.plan import Plan
from edgeweave.units.validate import execution_order


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive ``units`` of ``device``'s order, run as one step."""

    device: str
    units: tuple[str, ...]

    def __repr__(self) -> str:
        inside = self.units[0] if len(self.units) == 1 else f"{self.units[0]}..{self.units[-1]}"
        return f"{self.device}[{inside}]"


def segments(plan: Plan) -> tuple[Segment, ...]:
    """The plan's units grouped into segments, in a dependency order.

    A unit joins the segment still open on its device when everything it needs comes from
    that device and it belongs to the same model (so one model's outputs never wait for
    another's layers); a model input starts a segment (it arrives from outside); a unit whose
    results another device needs closes its segment. Stealable units (``Plan.pool``) form
    segments of their own — a chain of them, each reading the last layer of the one before,
    is one segment, which travels as one task — and the units they read close theirs, so
    that a task can be handed to whichever device takes it as soon as its inputs are there.
    """
    groups: list[list[str]] = []
    devices: list[str] = []
    open_on: dict[str, int] = {}  # device -> index of its open segment
    for unit_id in execution_order(plan):
        unit = plan.unit(unit_id)
        current = open_on.get(unit.device)
        stealable = unit_id in plan.pool
        if current is None or plan.is_input(unit_id):
            joins = False
        elif stealable:
            last = plan.unit(groups[current][-1])
            joins = last.id in plan.pool and any(
                need.unit == last.id and need.layer == last.last for need in unit.needs)
        else:
            joins = (groups[current][-1] not in plan.pool
                     and plan.unit(groups[current][0]).graph == unit.graph
                     and all(plan.unit(need.unit).device == unit.device for need in unit.needs))
        if not joins:
            current = len(groups)
            groups.append([])
            devices.append(unit.device)
        groups[current].append(unit_id)
        if not stealable and any(plan.unit(c).device != unit.device or c in plan.pool
                                 for c, _ in plan.forwarding[unit_id]):
            open_on.pop(unit.device, None)
        else:
            open_on[unit.device] = current
    return tuple(Segment(device, tuple(ids)) for device, ids in zip(devices, groups))


def receivers(plan: Plan, segment: Segment) -> tuple[str, ...]:
    """The other devices that a segment sends results to, sorted."""
    return tuple(sorted({plan.unit(consumer).device for unit_id in segment.units
                         for consumer, _ in plan.forwarding[unit_id]} - {segment.device}))


def step_units(plan: Plan, device: str, label: str) -> tuple[str, ...]:
    """The units a compute event's label names on ``device``: one unit, or ``first..last``
    — the run of the device's order from the first to the last."""
    first, _, last = label.partition("..")
    order = plan.order[device]
    return order[order.index(first):order.index(last or first) + 1]
