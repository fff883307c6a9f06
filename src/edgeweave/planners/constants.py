"""Constants with their readers: units that read no model input, placed where they are read.

A model computes some values from nothing the frame brings: a transformer's positions
(``arange``), a rotary table, a buffer cast to the input's dtype, an anchor grid. Such a
layer costs nothing, so a planner that places layers by when a device is free (EdgeFlow's
LP, HEFT) puts it on an idle device — and then the value travels to its reader every
frame, while that device has a segment that nothing starts. ``with_readers`` moves each
such unit — cheap (at most two FLOPs per output element), not stealable, and reading only
other such units — onto the device of its readers when they are all on one device,
just before the first of them in that device's order. A constant read on several devices
stays where its planner put it.
"""

from __future__ import annotations

import dataclasses
import math

from edgeweave.errors import PlanError
from edgeweave.units import Plan, Unit
from edgeweave.units.validate import validate


def _cheap(plan: Plan, unit: Unit) -> bool:
    graph = plan.graphs[unit.graph]
    layers = [graph[name] for name in unit.layers]
    size = math.prod(graph[unit.last].output_shape or ()) or 1
    return sum(layer.flops for layer in layers) <= 2 * size


def constant_units(plan: Plan) -> set[str]:
    """The units that read no model input (directly or through others), are cheap and are
    not stealable."""
    candidates = {unit.id for unit in plan.units
                  if not unit.relay and not plan.is_input(unit.id) and unit.id not in plan.pool
                  and _cheap(plan, unit)}
    found: set[str] = set()
    grown = True
    while grown:
        grown = False
        for unit in plan.units:
            if unit.id in candidates and unit.id not in found and all(
                    need.unit in found for need in unit.needs):
                found.add(unit.id)
                grown = True
    return found


def with_readers(plan: Plan) -> Plan:
    """``plan`` with every constant unit (``constant_units``) on the one device that reads
    it, if there is one and it has the memory; the plan itself when nothing moves."""
    constants = constant_units(plan)
    if not constants:
        return plan
    readers: dict[str, list[str]] = {}
    for unit in plan.units:
        for need in unit.needs:
            readers.setdefault(need.unit, []).append(unit.id)
    device = {unit.id: unit.device for unit in plan.units}
    order = {d: list(ids) for d, ids in plan.order.items()}

    def place(uid: str, target: str, before: int) -> None:
        """Put ``uid`` on ``target`` at ``before``, and its producers there after it
        just before it (constants read nothing else: moving one earlier is safe)."""
        order[device[uid]].remove(uid)
        lane = order.setdefault(target, [])
        lane.insert(min(before, len(lane)), uid)
        device[uid] = target
        for need in plan.unit(uid).needs:
            if device[need.unit] == target and lane.index(need.unit) > lane.index(uid):
                place(need.unit, target, lane.index(uid))

    moved = True
    while moved:  # readers first: a chain of constants follows its last reader
        moved = False
        for uid in sorted(constants):
            targets = {device[r] for r in readers.get(uid, ())}
            if len(targets) != 1 or device[uid] in targets:
                continue
            (target,) = targets
            lane = order.setdefault(target, [])
            place(uid, target, min(lane.index(r) for r in readers[uid]))
            moved = True
    if all(device[u.id] == u.device for u in plan.units):
        return plan
    units = tuple(dataclasses.replace(u, device=device[u.id]) for u in plan.units)
    made = dataclasses.replace(plan, units=units, order={d: tuple(ids) for d, ids in order.items()})
    try:
        validate(made)
    except PlanError:  # the readers' device lacks the memory: where the planner put them
        return plan
    return made
