"""Checks that a plan can run and gives the model's outputs, and what it costs in memory.

``validate`` raises a ``PlanError`` naming the unit or device when: unit ids repeat; a unit
sits on an unknown device or is missing from (or repeated in) its device's order; a unit
or need names a model or layer the plan does not hold, or a region that is empty, of the
wrong rank or outside its layer's output; a need
points at a unit that does not produce that region; a unit's needs do not cover what its
region reads; some output element of a model is computed by no unit; the needs and the
per-device orders form a cycle (a deadlock); a stealable unit (``Plan.pool``) is a model
input or a relay or names unknown takers; a relay has several layers or gathers a model
output (which goes back to its source anyway); the workload names a model the plan does
not hold, or a source its input units are not on; or a device's weights plus
peak live activations exceed its memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from edgeweave.errors import PlanError
from edgeweave.graph import LayerGraph
from edgeweave.units.plan import Plan, Unit, freed_after, layer_regions, reads
from edgeweave.units.region import Region, covers


@dataclass(frozen=True, slots=True)
class Footprint:
    """Memory a device needs for a plan: its units' weights (shared ones once) and the
    peak of the activations it holds at once, walking its order."""

    weight_bytes: int
    peak_activation_bytes: int

    @property
    def total_bytes(self) -> int:
        """Weights plus peak activations."""
        return self.weight_bytes + self.peak_activation_bytes


def validate(plan: Plan) -> None:
    """Raise a ``PlanError`` unless ``plan`` can run and computes every model output."""
    _check_placement(plan)
    for unit in plan.units:
        _check_names_and_regions(plan, unit)
    for unit in plan.units:
        _check_needs(plan, unit)
    _check_outputs(plan)
    _check_pool(plan)
    _check_workload(plan)
    _check_acyclic(plan)
    for device, footprint in footprints(plan).items():
        limit = plan.cluster.device(device).memory_bytes
        if footprint.total_bytes > limit:
            raise PlanError(
                f"Device '{device}' needs {footprint.total_bytes / 1e6:.1f} MB "
                f"({footprint.weight_bytes / 1e6:.1f} MB weights + "
                f"{footprint.peak_activation_bytes / 1e6:.1f} MB activations) but has "
                f"{limit / 1e6:.1f} MB.")


def _check_names_and_regions(plan: Plan, unit: Unit) -> None:
    graph = plan.graphs.get(unit.graph)
    if graph is None:
        raise PlanError(f"Unit {unit.id} belongs to model '{unit.graph}', which the plan does "
                        f"not hold (models: {', '.join(plan.graphs)}).")
    for layer, region, what in ([(name, None, "") for name in unit.layers[:-1]]
                                + [(unit.last, unit.region, "")]
                                + [(n.layer, n.region, f" need {n!r}") for n in unit.needs]):
        if layer not in graph:
            raise PlanError(f"Unit {unit.id}{what} names layer '{layer}', which model "
                            f"'{unit.graph}' does not have.")
        shape = graph[layer].output_shape
        if region is None or (shape is None and region == Region(())):
            continue
        full = Region.full(shape)
        if region.ndim != full.ndim or region.is_empty or not full.contains(region):
            raise PlanError(f"Unit {unit.id}{what}: region {region!r} of layer '{layer}' is "
                            f"empty, of the wrong rank or outside its output {full!r}.")


def _check_placement(plan: Plan) -> None:
    repeated = [uid for uid, n in Counter(u.id for u in plan.units).items() if n > 1]
    if repeated:
        raise PlanError(f"Unit ids must be unique; repeated: {repeated}.")
    devices = set(plan.cluster.names)
    for device in plan.order:
        if device not in devices:
            raise PlanError(f"The plan orders units on '{device}', which is not a device of "
                            f"cluster '{plan.cluster.name}'.")
    placed = Counter(uid for ids in plan.order.values() for uid in ids)
    for unit in plan.units:
        if unit.device not in devices:
            raise PlanError(f"Unit {unit.id} is placed on '{unit.device}', which is not a "
                            f"device of cluster '{plan.cluster.name}'.")
        if unit.id not in plan.order.get(unit.device, ()) or placed[unit.id] != 1:
            raise PlanError(f"Unit {unit.id} must appear once in the order of its device "
                            f"'{unit.device}'.")
    unknown = set(placed) - {u.id for u in plan.units}
    if unknown:
        raise PlanError(f"The order names units that do not exist: {sorted(unknown)}.")


def _check_needs(plan: Plan, unit) -> None:
    graph = plan.graphs[unit.graph]
    if unit.relay and (len(unit.layers) != 1 or unit.last in graph.outputs):
        raise PlanError(f"Unit {unit.id} is a relay of {list(unit.layers)}: a relay gathers "
                        "one layer, and not a model output.")
    got: dict[str, list[Region]] = {}
    for need in unit.needs:
        producer = plan.unit(need.unit)
        made = layer_regions(producer, graph).get(need.layer) if producer.graph == unit.graph \
            else None
        if made is None or not made.contains(need.region):
            raise PlanError(f"Unit {unit.id} needs {need!r}, which unit {need.unit} does not "
                            "produce.")
        got.setdefault(need.layer, []).append(need.region)
    for layer, region in reads(unit, graph).items():
        if not covers(got.get(layer, []), region):
            raise PlanError(f"Unit {unit.id} reads {region!r} of layer '{layer}', which its "
                            "needs do not cover.")


def _check_outputs(plan: Plan) -> None:
    for name, graph in plan.graphs.items():
        for output in graph.outputs:
            made = [layer_regions(u, graph)[output] for u in plan.units
                    if u.graph == name and output in u.layers and not u.relay]
            if not covers(made, Region.full(graph[output].output_shape)):
                raise PlanError(f"No unit computes all of output '{output}' of model '{name}'.")


def _check_pool(plan: Plan) -> None:
    devices = set(plan.cluster.names)
    for uid, takers in plan.pool.items():
        if plan.is_input(uid) or plan.unit(uid).relay:
            raise PlanError(f"Unit {uid} is a model input or a relay: it stays on its "
                            "device and cannot be taken by another.")
        if not takers or not set(takers) <= devices:
            raise PlanError(f"Unit {uid} may be taken by {list(takers)}: takers must be "
                            f"devices of cluster '{plan.cluster.name}'.")
    if plan.fallback:
        from edgeweave.units.stealing import tasks, unshrunk

        every = tasks(plan)
        for uid in plan.fallback:
            if uid not in every:
                raise PlanError(f"Unit {uid} has a fallback but is not the first unit of a "
                                "stealable task.")
            unshrunk(plan, every[uid])  # raises when it cannot be run unshrunk


def _check_workload(plan: Plan) -> None:
    for name, stream in plan.workload.items():
        if name not in plan.graphs:
            raise PlanError(f"The workload names model '{name}', which the plan does not hold "
                            f"(models: {', '.join(plan.graphs)}).")
        if stream.source != plan.sources[name]:
            raise PlanError(f"The workload says model '{name}' arrives at '{stream.source}' "
                            f"but the plan's input units are on '{plan.sources[name]}'.")


def dependencies(plan: Plan):
    """The units as a networkx DiGraph: an edge for each need and for each pair of units
    next to each other in a device's order. A valid plan's is acyclic."""
    import networkx as nx

    digraph = nx.DiGraph()
    digraph.add_nodes_from(u.id for u in plan.units)
    digraph.add_edges_from((need.unit, u.id) for u in plan.units for need in u.needs)
    for ids in plan.order.values():
        digraph.add_edges_from(zip(ids, ids[1:]))
    return digraph


def execution_order(plan: Plan) -> list[str]:
    """Unit ids in an order that respects every need and each device's order (ties broken
    by the units' order in the plan)."""
    import networkx as nx

    try:
        index = {u.id: i for i, u in enumerate(plan.units)}
        return list(nx.lexicographical_topological_sort(dependencies(plan),
                                                        key=index.__getitem__))
    except nx.NetworkXUnfeasible:
        raise PlanError("The plan deadlocks: its needs and device orders form a cycle.") from None


def _check_acyclic(plan: Plan) -> None:
    import networkx as nx

    digraph = dependencies(plan)
    if not nx.is_directed_acyclic_graph(digraph):
        cycle = [edge[0] for edge in nx.find_cycle(digraph)]
        raise PlanError(f"The plan deadlocks: units {cycle} wait for each other (through "
                        "their needs and the order of their devices).")


def _stack_peak_bytes(unit: Unit, graph: LayerGraph, keep: Collection[str]) -> int:
    """The most bytes of its own layers a unit holds at once while it runs: a layer of a
    fused stack is freed after the last layer of the stack that reads it, unless kept
    (``units.plan.freed_after``, the rule ``units.compute.compute_unit`` follows)."""
    regions = layer_regions(unit, graph)
    freed = freed_after(regions, graph, keep)
    live: dict[str, int] = {}
    peak = 0
    for layer, region in regions.items():
        live[layer] = region.numel * graph[layer].itemsize
        peak = max(peak, sum(live.values()))
        for name in freed[layer]:
            del live[name]
    return peak


def footprints(plan: Plan) -> dict[str, Footprint]:
    """The memory each device needs for the plan."""
    result = {}
    outputs = {(name, o) for name, g in plan.graphs.items() for o in g.outputs}
    for device, ids in plan.order.items():
        units = [plan.unit(uid) for uid in ids]
        params = {(u.graph, p) for u in units if not u.relay for layer in u.layers
                  for p in plan.graphs[u.graph][layer].params}
        weights = sum(plan.graphs[g].param_sizes[p] for g, p in params)
        position = {uid: i for i, uid in enumerate(ids)}
        live: dict[str, tuple[int, int]] = {}  # unit -> (bytes, last position it is needed)
        peak = 0
        for i, unit in enumerate(units):
            graph = plan.graphs[unit.graph]
            itemsize = graph[unit.last].itemsize
            received = sum(n.region.numel * itemsize for n in unit.needs
                           if plan.unit(n.unit).device != device)
            made = _stack_peak_bytes(unit, graph, plan.read_after[unit.id])
            peak = max(peak, received + made + sum(b for b, _ in live.values()))
            local = [position[c] for c, _ in plan.forwarding[unit.id] if c in position]
            keep = (unit.graph, unit.last) in outputs
            if local or keep:
                live[unit.id] = (unit.region.numel * itemsize, len(ids) if keep else max(local))
            live = {k: v for k, v in live.items() if v[1] > i}
        result[device] = Footprint(weights, peak)
    return result
