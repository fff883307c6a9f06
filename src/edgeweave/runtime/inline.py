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

from edgeweave.errors import ExampleInputError
from edgeweave.units import Plan, Region, execution_order
from edgeweave.units.compute import Piece, assemble, compute_unit, crop, input_unit

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
        if plan.is_input(unit_id):
            produced[unit_id] = input_unit(graph, unit, by_graph[unit.graph])
            continue
        # copies, as a transfer to another device would make
        received = [(need, crop(produced[need.unit][need.layer], need.region).clone())
                    for need in unit.needs]
        produced[unit_id] = compute_unit(graph, unit, received)
    pieces: dict[tuple[str, str], list[Piece]] = {}
    for unit in plan.units:
        for layer, piece in produced[unit.id].items():
            if layer in plan.graphs[unit.graph].outputs:
                pieces.setdefault((unit.graph, layer), []).append(piece)
    results = collect_outputs(plan, pieces)
    return results if isinstance(inputs, Mapping) else next(iter(results.values()))


def collect_outputs(plan: Plan, pieces: Mapping[tuple[str, str], list[Piece]]) -> dict[str, Any]:
    """Each model's outputs, stitched from the pieces of its output layers (by model and
    layer name) that the units computed."""
    results = {}
    for name, graph in plan.graphs.items():
        values = {layer: assemble(Region.full(graph[layer].output_shape), pieces[name, layer])
                  for layer in graph.outputs}
        results[name] = graph.assemble_outputs(values)
    return results


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
