"""Neurosurgeon's best single cut between the input device and a server.

Kang et al., "Neurosurgeon: Collaborative Intelligence Between the Cloud and Mobile Edge",
ASPLOS 2017 — for chains; for DAGs the cut is a set of layers closed under predecessors
(nothing flows back from the server), found exactly as a minimum s-t cut as in DADS (Hu
et al., INFOCOM 2019). Latency of a cut ``S`` (run on the device, the rest on the server,
one after the other):

    sum(device time of S) + sum(server time of the rest)
    + transfer time of every tensor of S read outside S + return of outputs computed remotely

Graph: source = device side, sink = server side. Edge source->v costs v's server time
(cut when v is on the server), v->sink its device time; infinite edges w->u for each
edge u->w forbid a layer on the device after one on the server; an auxiliary node per
layer with outside readers charges its transfer once. Complexity: one max-flow on
O(layers + edges) nodes and edges. The server is the fastest device of the cluster.

>>> import edgeweave as ew
>>> m, x = ew.models.get("line")
>>> plan = ew.plan(ew.trace(m, x), "rpi4b+edge-server@wifi", planner="neurosurgeon")
>>> plan.planner
'neurosurgeon'
"""

from __future__ import annotations

import random

from edgeweave.cluster import Device
from edgeweave.graph import LayerGraph, OpKind
from edgeweave.planners.problem import Problem
from edgeweave.units import Plan, build_plan, whole

_SOURCE, _SINK = "<device>", "<server>"


def cut_latency(problem: Problem, graph: LayerGraph, on_device: set[str], device: Device,
                server: Device) -> float:
    """The sequential latency of running ``on_device`` on the device and the rest remotely."""
    link = problem.cluster.link(device.name, server.name) if device != server else None
    total = 0.0
    for layer in graph:
        here = layer.name in on_device
        total += problem.cost.compute_s(graph, layer, device if here else server)
        crosses = here and any(s not in on_device for s in graph.successors(layer.name))
        returns = not here and layer.name in graph.outputs
        if crosses or returns:
            total += problem.cost.transfer_s(layer.output_bytes, link)
    return total


def best_cut(problem: Problem, graph: LayerGraph, device: Device, server: Device) -> set[str]:
    """The layers to run on ``device``: a predecessor-closed set of least latency."""
    import networkx as nx

    if device == server:
        return {layer.name for layer in graph}
    link = problem.cluster.link(device.name, server.name)
    flow = nx.DiGraph()
    for layer in graph:
        name = layer.name
        flow.add_node(name)
        if layer.kind is OpKind.INPUT:
            flow.add_edge(_SOURCE, name)  # no capacity: inputs stay on the device
        else:
            back = problem.cost.transfer_s(layer.output_bytes, link) if name in graph.outputs \
                else 0.0
            flow.add_edge(_SOURCE, name,
                          capacity=_ns(problem.cost.compute_s(graph, layer, server) + back))
            flow.add_edge(name, _SINK, capacity=_ns(problem.cost.compute_s(graph, layer, device)))
        readers = graph.successors(name)
        if readers:
            relay = f"<send {name}>"
            flow.add_edge(name, relay,
                          capacity=_ns(problem.cost.transfer_s(layer.output_bytes, link)))
            for reader in readers:
                flow.add_edge(relay, reader)
                flow.add_edge(reader, name)  # closure: no reader on the device after the server
    _, (device_side, _) = nx.minimum_cut(flow, _SOURCE, _SINK)
    return {layer.name for layer in graph if layer.name in device_side}


def _ns(seconds: float) -> int:
    # networkx's max-flow is exact only on integer capacities
    return round(seconds * 1e9)


def plan(problem: Problem, rng: random.Random) -> Plan:
    """Each model cut once between the input device and the fastest device."""
    server = problem.fastest()
    parts = []
    for graph in problem.graphs.values():
        device = problem.source_of(graph)
        on_device = best_cut(problem, graph, device, server)
        parts += [whole(graph, layer, device.name if layer in on_device else server.name)
                  for layer in problem.layers(graph)]
    return build_plan(problem.graphs, problem.cluster, parts, planner="neurosurgeon",
                      options=problem.options, models=problem.models, workload=problem.streams)
