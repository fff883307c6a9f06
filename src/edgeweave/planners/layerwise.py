"""The layer-by-layer baselines of seed 002's comparison, on EdgeFlow's own clock.

- ``heft``: whole layers placed by list scheduling on the DAG — HEFT (Topcuoglu et al.,
  IEEE TPDS 2002) without insertion: layers by decreasing upward rank (mean compute time
  over the devices plus the longest mean path of transfers and compute to an output),
  each on the device where it would finish first.
- ``equal-split``: every layer that can be split cut into equal bands, one per device
  (MoDNN-style); others whole on the device that finishes them first.
- ``proportional-split``: the same, bands proportional to each device's throughput
  (CoEdge-style).

Single-device execution is ``local`` / ``remote``. Devices without the memory for a layer
get none of it, as in EdgeFlow.
"""

from __future__ import annotations

import random
import statistics

from edgeweave.cluster import Device
from edgeweave.graph import LayerGraph
from edgeweave.planners.problem import Problem
from edgeweave.planners.progressive import Progress, partition, round_shares
from edgeweave.units import Plan, Region


def heft(problem: Problem, rng: random.Random) -> Plan:
    """Whole layers, by decreasing upward rank, each on its earliest-finishing device."""
    progress = Progress(problem)
    for graph in problem.graphs.values():
        rank = upward_rank(problem, graph)
        for layer in sorted(problem.layers(graph), key=lambda n: (-rank[n], graph.index_of(n))):
            _, device = progress.best_single(graph, layer, progress.devices_for(graph, layer))
            progress.place(graph, layer, [(device, Region.full(graph[layer].output_shape))])
    return progress.plan("heft")


def upward_rank(problem: Problem, graph: LayerGraph) -> dict[str, float]:
    """HEFT's priority: a layer's mean compute time plus the largest, over its readers, of
    the mean time to send its output and the reader's rank."""
    devices, links = problem.cluster.devices, problem.cluster.links
    mean_seconds_per_byte = statistics.mean(8.0 / link.bandwidth_bps for link in links) \
        if links else 0.0
    rank: dict[str, float] = {}
    for name in reversed(graph.topological_order()):
        layer = graph[name]
        compute = statistics.mean(problem.cost.compute_s(graph, layer, d) for d in devices)
        send = layer.output_bytes * mean_seconds_per_byte
        rank[name] = compute + max((send + rank[s] for s in graph.successors(name)),
                                   default=0.0)
    return rank


def equal_split(problem: Problem, rng: random.Random) -> Plan:
    """Every splittable layer in equal bands over the devices that can hold it."""
    def rows(progress: Progress, graph: LayerGraph, layer: str, dim: int,
             devices: list[Device]) -> list[int]:
        return round_shares([1 / len(devices)] * len(devices), graph[layer].output_shape[dim])
    return partition(problem, rows, always_split=True).plan("equal-split")


def proportional_split(problem: Problem, rng: random.Random) -> Plan:
    """Every splittable layer in bands proportional to the devices' throughput."""
    def rows(progress: Progress, graph: LayerGraph, layer: str, dim: int,
             devices: list[Device]) -> list[int]:
        total = sum(d.flops_per_s for d in devices)
        return round_shares([d.flops_per_s / total for d in devices],
                            graph[layer].output_shape[dim])
    return partition(problem, rows, always_split=True).plan(
        "proportional-split")
