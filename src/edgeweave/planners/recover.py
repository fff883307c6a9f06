"""Re-planning around lost devices: their units move to one survivor, the rest stay put.

Every other unit keeps its id, device and place in its device's order, so what the
survivors hold — results they computed, regions they received — stays valid, and a run
only recomputes what the lost devices had not delivered. The adopter is the surviving
device that would compute the moved units soonest by the cost model among those whose
memory still holds the plan; the moved units join its order where a dependency order of
the old plan puts them, which keeps the new plan free of deadlocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from edgeweave.cost import CostModel
from edgeweave.errors import PlanError
from edgeweave.units import unit_compute_s
from edgeweave.units import Plan, execution_order, validate


def without(plan: Plan, lost: Collection[str], cost: CostModel | None = None) -> Plan:
    """``plan`` with the units of the ``lost`` devices moved onto one surviving device;
    a ``PlanError`` when no survivor can hold them."""
    unknown = set(lost) - set(plan.cluster.names)
    if unknown:
        raise PlanError(f"Cluster '{plan.cluster.name}' has no device(s) {sorted(unknown)}.")
    moved = {uid for device in lost for uid in plan.order.get(device, ())}
    survivors = [name for name in plan.cluster.names if name not in lost]
    if not survivors:
        raise PlanError("No device survives to take over the plan.")
    cost = cost or CostModel.for_cluster(plan.cluster)
    rank = {uid: i for i, uid in enumerate(execution_order(plan))}
    candidates = []
    for adopter in survivors:
        units = tuple(dataclasses.replace(u, device=adopter) if u.id in moved else u
                      for u in plan.units)
        order = {device: () if device in lost else tuple(ids) for device, ids in
                 plan.order.items()}
        order[adopter] = tuple(sorted([*order.get(adopter, ()), *moved], key=rank.__getitem__))
        candidate = dataclasses.replace(plan, units=units, order=order)
        seconds = sum(unit_compute_s(candidate, cost, uid) for uid in moved)
        candidates.append((seconds, survivors.index(adopter), candidate))
    reasons = []
    for _, _, candidate in sorted(candidates, key=lambda c: c[:2]):
        try:
            validate(candidate)
            return candidate
        except PlanError as error:
            reasons.append(str(error))
    raise PlanError(f"No surviving device can take over the units of {', '.join(sorted(lost))}: "
                    + " ".join(reasons))
