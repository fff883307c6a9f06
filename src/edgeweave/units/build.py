"""From a planner's decisions to a valid plan: naming, input units, wiring of needs.

A planner decides *what* each unit computes and *where* — a ``Part``: layers, region,
device — and the order on each device. ``build_plan`` does the rest the same way for
every planner: it adds a unit for each model input on the device where its inputs arrive,
derives every unit's needs from the region arithmetic (a unit reads from the producers of
the regions it needs: a relay of the layer if there is one, else preferring a producer on
its own device), and validates the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgeweave.cluster import Cluster
from edgeweave.errors import PlanError
from edgeweave.graph import LayerGraph
from edgeweave.units.plan import Need, Plan, Unit, layer_regions, reads
from edgeweave.units.region import Region, covers
from edgeweave.units.validate import validate
from edgeweave.units.workload import Workload


@dataclass(frozen=True, slots=True)
class Part:
    """A planner's decision for one unit: ``layers`` of ``graph``, ``region`` of the last
    layer's output, on ``device``; a ``relay`` gathers that region (``units.plan``)."""

    graph: str
    layers: tuple[str, ...]
    region: Region
    device: str
    relay: bool = False


def whole(graph: LayerGraph, layer: str, device: str) -> Part:
    """A part computing all of one layer on one device."""
    return Part(graph.name, (layer,), Region.full(graph[layer].output_shape), device)


def relay(graph: LayerGraph, layer: str, device: str) -> Part:
    """A part gathering all of one layer, which others compute, on one device."""
    return Part(graph.name, (layer,), Region.full(graph[layer].output_shape), device, True)


def build_plan(graphs: Mapping[str, LayerGraph], cluster: Cluster, parts: Sequence[Part],
               order: Mapping[str, Sequence[int]] | None = None, planner: str = "manual",
               options: Mapping[str, Any] | None = None,
               models: Mapping[str, str] | None = None,
               workload: Workload | None = None) -> Plan:
    """A validated plan of ``parts``; ``order`` lists part indices per device (default: in
    the order of the parts' last layers in their graphs); ``workload`` gives, per model, its
    stream, whose source is where its inputs arrive (default: the cluster's first device)."""
    workload = dict(workload or {})
    first = cluster.devices[0].name
    given = {(p.graph, p.layers[-1]) for p in parts if not p.relay}
    inputs = [whole(g, name, workload[g.name].source if g.name in workload else first)
              for g in graphs.values() for name in g.inputs if (g.name, name) not in given]
    # a device takes its models' inputs as they arrive: one due later must not hold up others
    inputs.sort(key=lambda p: workload[p.graph].arrival_s(0) if p.graph in workload else 0.0)
    all_parts = [*inputs, *parts]
    ids = [f"u{i}" for i in range(len(all_parts))]
    units = [Unit(uid, p.graph, tuple(p.layers), p.region, p.device, relay=p.relay)
             for uid, p in zip(ids, all_parts)]
    producers: dict[tuple[str, str], list[Unit]] = {}
    for unit in units:
        for layer in unit.layers:
            producers.setdefault((unit.graph, layer), []).append(unit)
    units = [_wired(unit, producers, graphs) for unit in units]
    if order is None:
        ranking = sorted(range(len(parts)), key=lambda i: graphs[parts[i].graph].index_of(
            parts[i].layers[-1]))
        order = {d: [i for i in ranking if parts[i].device == d] for d in cluster.names}
    shift = len(inputs)
    full_order = {d: tuple([uid for uid, p in zip(ids, inputs) if p.device == d]
                           + [ids[shift + i] for i in order.get(d, ())]) for d in cluster.names}
    plan = Plan(dict(graphs), cluster, tuple(units), full_order, planner, dict(options or {}),
                dict(models or {}), workload=workload)
    validate(plan)
    return plan


def _wired(unit: Unit, producers_of: Mapping[tuple[str, str], list[Unit]],
           graphs: Mapping[str, LayerGraph]) -> Unit:
    graph = graphs.get(unit.graph)
    if graph is None:
        raise PlanError(f"Unit {unit.id} belongs to unknown model '{unit.graph}'.")
    if any(name not in graph for name in unit.layers):
        missing = [name for name in unit.layers if name not in graph]
        raise PlanError(f"Unit {unit.id} names layers {missing} that model '{unit.graph}' "
                        "does not have.")
    needs: list[Need] = []
    for layer, region in reads(unit, graph).items():
        if region.is_empty:
            continue
        producers = sorted((u for u in producers_of.get((unit.graph, layer), ())
                            if not (unit.relay and u.relay)),  # a relay gathers from the makers
                           key=lambda u: (not u.relay, u.device != unit.device))
        taken: list[Region] = []
        for producer in producers:
            part = layer_regions(producer, graph)[layer].intersect(region)
            if not part.is_empty and not covers(taken, part):
                needs.append(Need(producer.id, layer, part))
                taken.append(part)
        if not covers(taken, region):
            raise PlanError(f"Unit {unit.id} ({unit.graph} {unit.last} {unit.region!r}) needs "
                            f"{region!r} of layer '{layer}', which no unit produces in full.")
    return dataclasses.replace(unit, needs=tuple(needs))
