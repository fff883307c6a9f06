"""The inline backend: every unit of a plan, in one process, in a dependency order.

It slices, sends (by reference) and stitches tensors exactly as a distributed run does —
each unit sees only the regions its needs name — so comparing its outputs with the
original model checks the plan, the region arithmetic and the region kernels at once.
It is the correctness oracle of every test that makes a plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from edgeweave.errors import ExampleInputError, PlanError
from edgeweave.units import Plan, Region, layer_regions
from edgeweave.units.compute import Piece, assemble, compute_region, crop, merge

Inputs = torch.Tensor | tuple[torch.Tensor, ...] | Mapping[str, Any]


def run_inline(plan: Plan, inputs: Inputs) -> Any:
    """Execute ``plan`` on ``inputs`` and return the model's outputs.

    ``inputs`` is what the model takes (a tensor or tuple) for a one-model plan, or a dict
    from model name to that for several; the result has the same shape of container.
    """
    by_graph = normalise_inputs(plan, inputs)
    produced: dict[str, dict[str, Piece]] = {}  # unit -> layer -> piece
    for unit_id in execution_order(plan):
        unit = plan.unit(unit_id)
        graph = plan.graphs[unit.graph]
        if graph[unit.last].kind == "input":
            tensor = by_graph[unit.graph][graph.inputs.index(unit.last)]
            produced[unit_id] = {unit.last: (unit.region, tensor[unit.region.slices()])}
            continue
        received: dict[str, list[Piece]] = {}
        for need in unit.needs:
            piece = produced[need.unit][need.layer]
            received.setdefault(need.layer, []).append((need.region, _cut(piece, need.region)))
        available = {layer: merge(pieces) for layer, pieces in received.items()}
        regions = layer_regions(unit, graph)
        outputs: dict[str, Piece] = {}
        for layer in unit.layers:
            tensor = compute_region(graph, layer, regions[layer], available)
            available[layer] = outputs[layer] = (regions[layer], tensor)
        produced[unit_id] = outputs
    results = {}
    for name, graph in plan.graphs.items():
        values = {}
        for output in graph.outputs:
            pieces = [produced[u.id][output] for u in plan.units
                      if u.graph == name and output in u.layers]
            values[output] = assemble(Region.full(graph[output].output_shape), pieces)
        results[name] = graph.assemble_outputs(values)
    return results if isinstance(inputs, Mapping) else next(iter(results.values()))


def normalise_inputs(plan: Plan, inputs: Inputs) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs per model name, each a checked tuple of tensors."""
    if isinstance(inputs, Mapping):
        by_graph = dict(inputs)
    elif len(plan.graphs) == 1:
        by_graph = {next(iter(plan.graphs)): inputs}
    else:
        raise ExampleInputError(f"The plan runs {len(plan.graphs)} models "
                                f"({', '.join(plan.graphs)}): give a dict of inputs by model.")
    result = {}
    for name, graph in plan.graphs.items():
        if name not in by_graph:
            raise ExampleInputError(f"No input given for model '{name}'.")
        value = by_graph[name]
        value = (value,) if isinstance(value, torch.Tensor) else tuple(value)
        graph.check_inputs(value)
        result[name] = value
    return result


def execution_order(plan: Plan) -> list[str]:
    """Unit ids in an order that respects every need and each device's order."""
    import networkx as nx

    digraph = nx.DiGraph()
    digraph.add_nodes_from(u.id for u in plan.units)
    digraph.add_edges_from((n.unit, u.id) for u in plan.units for n in u.needs)
    for ids in plan.order.values():
        digraph.add_edges_from(zip(ids, ids[1:]))
    try:
        index = {u.id: i for i, u in enumerate(plan.units)}
        return list(nx.lexicographical_topological_sort(digraph, key=index.__getitem__))
    except nx.NetworkXUnfeasible:
        raise PlanError("The plan deadlocks: its needs and device orders form a cycle.") from None


def _cut(piece: Piece, region: Region) -> torch.Tensor:
    return crop(piece, region).clone()  # a copy, as a transfer to another device would be

