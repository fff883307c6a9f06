"""The planners, one module per method, behind one registry and the ``plan`` front door.

A planner is a pure function ``(problem, rng) -> Plan``: no I/O, no global state, the same
seed gives the same plan. Adding a method means one module and one line in ``PLANNERS``
(with the options it accepts and their defaults).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edgeweave.cluster import Cluster
from edgeweave.cost import CostModel
from edgeweave.errors import EdgeweaveError, UnknownNameError
from edgeweave.graph import LayerGraph
from edgeweave.graph.layer import OpKind
from edgeweave.planners import (baselines, deepthings, edgeflow, fused, johnson, layerwise,
                                memetic, modnn, neurosurgeon)
from edgeweave.planners.constants import with_readers
from edgeweave.planners.problem import Problem
from edgeweave.units import Plan, Region, Stream

Planner = Callable[[Problem, random.Random], Plan]

# name: (planner, its options with defaults, one line about it)
PLANNERS: dict[str, tuple[Planner, Mapping[str, Any], str]] = {
    "local": (baselines.local, {}, "everything on the device where inputs arrive"),
    "remote": (baselines.remote, {}, "inputs sent to the fastest device, everything there"),
    "neurosurgeon": (neurosurgeon.plan, {}, "best single cut device -> server (min-cut on DAGs)"),
    "johnson": (johnson.plan, {"max_paths": 8},
                "seed 001: paths cut and ordered by Extended Johnson, device -> server"),
    "edgeflow": (edgeflow.plan, {}, "seed 002: every layer split over the devices by an LP, "
                 "layer by layer"),
    "fused": (fused.plan, {"max_depth": 16},
              "layers fused into stacks cut in bands, few exchanges (seed 003's fusion, DP)"),
    "deepthings": (deepthings.plan, {"n": None, "m": None, "layers": None, "max_grid": 5,
                                      "after": "gateway", "gateway": None,
                                      "gateway_tiles": True, "reuse": False,
                                      "steal": False, "share": False, "fallback": False},
                   "seed 003: the first layers in an N x M grid of fused tile stacks (FTP)"),
    "bodp": (modnn.plan, {"gateway": None, "gateway_rows": True, "layers": None},
             "seed 003's baseline: rows in proportion to speed, gathered after every layer "
             "(MoDNN)"),
    "lo": (memetic.layer_offloading, {**memetic.DEFAULTS, "pieces": 1},
           "seed 000's LO: whole layers in blocks, placed by PSO-GA (several models at once)"),
    "po": (memetic.piece_offloading, memetic.DEFAULTS,
           "seed 000's PO: layers cut in pieces, grouped in blocks, placed by PSO-GA"),
    "mo": (memetic.memetic_offloading, memetic.MEMETIC_DEFAULTS,
           "seed 000's MO: pieces in blocks placed by a memetic search (PSO-GA + local)"),
    "heft": (layerwise.heft, {}, "whole layers list-scheduled on the DAG (HEFT)"),
    "equal-split": (layerwise.equal_split, {}, "every layer in equal bands over the devices"),
    "proportional-split": (layerwise.proportional_split, {},
                           "every layer in bands proportional to device throughput"),
}


def plan(graphs: LayerGraph | Sequence[LayerGraph] | Mapping[str, LayerGraph],
         cluster: Cluster | str | Mapping[str, Any], planner: str = "local", seed: int = 0,
         models: Mapping[str, str] | None = None,
         sources: Mapping[str, str] | None = None,
         workload: Mapping[str, Stream | Mapping[str, Any]] | None = None,
         **options: Any) -> Plan:
    """Plan one model or several on a cluster with a registered planner.

    ``graphs`` is a traced graph, a list of them (names must differ) or a dict by name;
    ``cluster`` a ``Cluster``, an expression or a file path; ``models`` optionally the model
    spec of each graph, recorded so that a saved plan can be loaded again. ``workload``
    optionally gives, per model, its ``Stream`` (or a dict of its fields): the device where
    its inputs arrive, when its frames arrive, its weight and deadline; ``sources`` is the
    short form for the devices alone. A model named in neither arrives at the cluster's
    first device at time 0. Every planner minimises the workload's objective
    (``units.workload.objective_s``: with several models, their completion time).
    """
    if planner not in PLANNERS:
        raise UnknownNameError(f"Unknown planner '{planner}'. Known planners: "
                               f"{', '.join(PLANNERS)}.")
    function, defaults, _ = PLANNERS[planner]
    unknown = set(options) - set(defaults)
    if unknown:
        raise EdgeweaveError(f"Planner '{planner}' has no option(s) {sorted(unknown)}; its "
                             f"options: {sorted(defaults) or 'none'}.")
    by_name = _by_name(graphs)
    loaded = Cluster.load(cluster)
    problem = Problem(by_name, loaded, CostModel.for_cluster(loaded), {**defaults, **options},
                      dict(models or {}), _streams(workload or {}, sources or {}, by_name, loaded))
    return _kept_whole(with_readers(function(problem, random.Random(seed))))


def _kept_whole(made: Plan) -> Plan:
    """A plan that splits layers notes, under ``kept_whole``, the ops it could not split
    (attention's matrix products and softmax, norms over a whole token, a module with its
    own forward): the region kernels compute those only whole, so each runs on one device."""
    if all(unit.region == Region.full(made.graphs[unit.graph][unit.last].output_shape)
           for unit in made.units if made.graphs[unit.graph][unit.last].output_shape):
        return made
    count: dict[str, int] = {}
    for graph in made.graphs.values():
        for layer in graph:
            if layer.kind is OpKind.OTHER:
                op = str(layer.attrs.get("op", layer.target)).removesuffix(".default")
                count[op] = count.get(op, 0) + 1
    if not count:
        return made
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(count.items(), key=lambda c: -c[1]))
    return dataclasses.replace(made, notes={**made.notes, "kept_whole": ops})


def _streams(workload: Mapping[str, Any], sources: Mapping[str, str],
             graphs: Mapping[str, LayerGraph], cluster: Cluster) -> dict[str, Stream]:
    """Each model's stream from ``workload`` and ``sources``, checked against the graphs and
    the cluster."""
    streams: dict[str, Stream] = {}
    for name in {**workload, **sources}:
        if name not in graphs:
            raise EdgeweaveError(f"The workload names model '{name}', which is not planned "
                                 f"(models: {', '.join(graphs)}).")
        given = workload.get(name, {})
        if not isinstance(given, Stream):
            given = Stream.from_dict({"source": cluster.names[0], **dict(given)})
        stream = dataclasses.replace(given, source=sources.get(name, given.source))
        if stream.source not in cluster.names:
            raise EdgeweaveError(f"Model '{name}' arrives at '{stream.source}', which is not "
                                 f"a device of cluster '{cluster.name}' "
                                 f"({', '.join(cluster.names)}).")
        streams[name] = stream
    return streams


def _by_name(graphs) -> dict[str, LayerGraph]:
    if isinstance(graphs, LayerGraph):
        return {graphs.name: graphs}
    if isinstance(graphs, Mapping):
        return dict(graphs)
    by_name = {g.name: g for g in graphs}
    if len(by_name) != len(graphs):
        raise EdgeweaveError("Graphs planned together need different names "
                             "(trace(..., name=...)).")
    return by_name
