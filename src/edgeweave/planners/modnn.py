"""MoDNN's Biased One-Dimensional Partition (BODP): the layer-based baseline of seed 003.

Mao et al. (DATE 2017) run a model on a group of mobile devices layer by layer: the group
owner — the *gateway* — holds each layer's input, hands every device a band of rows in
proportion to its speed ("biased"), and gathers the bands back before the next layer.
Each splittable layer (``progressive.split_dim``) is one band per device, rows in
proportion to the inverse of its time for the whole layer by the cost model (a calibrated
cluster's, when calibrated), followed by a *relay* on the gateway that gathers the layer
(``units.plan``), which the next layers read from: every exchange goes through the
gateway, where EdgeFlow's bands trade only their halos with their neighbours. A model
output's bands go back to the model's source like any output; layers that cannot be
split run whole on the gateway; a frame arriving elsewhere is relayed to the gateway
first.

Options: ``gateway``, the group owner (default: each model's source); ``gateway_rows``,
whether the gateway computes rows too (default True; DeepThings' comparison hands them to
the edge nodes only); ``layers``, how many layers from the input are partitioned (in
topological order, counted as ``deepthings`` counts them; the rest run on the gateway, as
in DeepThings' comparison; default all).
"""

from __future__ import annotations

import dataclasses
import random

from edgeweave.cluster import Device
from edgeweave.errors import PlanError
from edgeweave.graph import LayerGraph
from edgeweave.planners.problem import Problem
from edgeweave.planners.progressive import bands, round_shares, split_dim
from edgeweave.units import Part, Plan, build_plan, footprints, relay, whole


def plan(problem: Problem, rng: random.Random) -> Plan:
    """Every splittable layer in speed-proportional bands, gathered on the gateway."""
    count = problem.options["layers"]
    if not (count is None or (isinstance(count, int) and count >= 1)):
        raise PlanError(f"The 'layers' option of planner 'bodp' must be a number of layers "
                        f"from the input (1 or more) or None. Got {count!r} instead.")
    if not isinstance(problem.options["gateway_rows"], bool):
        raise PlanError("The 'gateway_rows' option of planner 'bodp' must be True or False. "
                        f"Got {problem.options['gateway_rows']!r} instead.")
    named = problem.options["gateway"]
    if named is not None and named not in problem.cluster.names:
        raise PlanError(f"The 'gateway' option of planner 'bodp' names no device of cluster "
                        f"'{problem.cluster.name}'. Got {named!r} instead.")
    parts: list[Part] = []
    for graph in problem.graphs.values():
        gateway = named or problem.source_of(graph).name
        if gateway != problem.source_of(graph).name:  # the frame goes to the gateway first
            parts += [relay(graph, name, gateway) for name in graph.inputs]
        workers = [d for d in problem.cluster.devices
                   if problem.options["gateway_rows"] or d.name != gateway]
        if not workers:
            raise PlanError(f"BODP with gateway_rows=False needs a device besides the "
                            f"gateway '{gateway}'.")
        layers = problem.layers(graph)
        partitioned = set(layers if count is None else layers[:count])
        for layer in layers:
            dim = split_dim(graph, layer)
            split = [] if dim is None or layer not in partitioned else bands(
                graph, layer, dim, list(zip((d.name for d in workers),
                                            _rows(problem, graph, layer, dim, workers))))
            if len(split) < 2 and (not split or split[0][0] == gateway):
                parts.append(whole(graph, layer, gateway))
                continue
            parts += [Part(graph.name, (layer,), region, device) for device, region in split]
            if layer not in graph.outputs:  # outputs go back to the source anyway
                parts.append(relay(graph, layer, gateway))
    made = build_plan(problem.graphs, problem.cluster, parts, planner="bodp",
                      options=problem.options, models=problem.models, workload=problem.streams)
    from edgeweave.simulation import predicted_s

    gathered = sum(part.relay and part.layers[0] not in problem.graphs[part.graph].inputs
                   for part in parts)
    return dataclasses.replace(made, notes={
        "summary": f"{gathered} layers split in bands and gathered on the gateway",
        "split_layers": gathered, "predicted_ms": 1e3 * predicted_s(made),
        "footprint_bytes": {d: f.total_bytes for d, f in footprints(made).items()}})


def _rows(problem: Problem, graph: LayerGraph, layer: str, dim: int,
          workers: list[Device]) -> list[int]:
    """Each worker's rows of ``layer``, in proportion to its speed for it."""
    speed = [1.0 / max(problem.cost.compute_s(graph, graph[layer], d), 1e-12) for d in workers]
    return round_shares([s / sum(speed) for s in speed], graph[layer].output_shape[dim])
