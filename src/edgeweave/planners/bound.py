"""A lower bound on the objective of a workload (``units.workload.objective_s`` over one
frame of every model: with models arriving together, unweighted, their completion time)
that no plan on the cost model can beat, so that a plan can be reported with its gap.

Two bounds, the larger kept:

- **Work**: an LP (HiGHS) spreads each model's divisible work over the
  devices — any share of a model anywhere, every layer as finely as one likes — and
  minimises the busiest device's time: no plan can keep every device less busy. The last
  model done waited at most the spread of the arrivals for its own, and weighs at least the
  least weight.
- **Critical path**: each model's longest chain of layers, each layer taking at best its
  divisible work shared by all the devices at once (``1 / sum(1 / t_d)``) — or its time on
  the fastest device when it cannot be split — weighted by the model's weight. When the
  model's source cannot hold all of its weights, some data of every chain from input to
  output must cross a link (a cut between layers, or the outputs coming back): the chain
  also pays the smallest link latency once (not the bytes: a banded cut may send only a
  halo).

Only the part of a layer's time that shrinks with its share counts (a calibrated
per-layer overhead does not: a plan could pay it fewer times than the bound assumes), and
transfers count only as said, so the bound is loose where links dominate; it is a floor,
not an estimate.
"""

from __future__ import annotations

import numpy as np

from edgeweave.cluster import Device
from edgeweave.cost import CostModel
from edgeweave.graph import LayerGraph
from edgeweave.planners.lp import INFINITY, solve_lp
from edgeweave.planners.problem import Problem
from edgeweave.planners.progressive import split_dim


def divisible_s(cost: CostModel, graph: LayerGraph, name: str, device: Device) -> float:
    """The part of a layer's time on ``device`` that is proportional to its share."""
    layer = graph[name]
    return max(0.0, cost.compute_s(graph, layer, device) - cost.compute_s(graph, layer, device,
                                                                           1e-12))


def lower_bound_s(problem: Problem) -> float:
    """Seconds below which no plan's objective falls, over one frame of every model."""
    devices = problem.cluster.devices
    work = np.array([[sum(divisible_s(problem.cost, g, n, d) for n in problem.layers(g))
                      for d in devices] for g in problem.graphs.values()])
    streams = problem.streams.values()
    spread = max(s.arrival_s(0) for s in streams) - min(s.arrival_s(0) for s in streams)
    least = min(s.weight for s in streams)
    return max(least * (_work_bound(work) - spread),
               max(problem.streams[g.name].weight * _path_bound(problem, g)
                   for g in problem.graphs.values()))


def _work_bound(work: np.ndarray) -> float:
    """min T such that shares x[m, d] >= 0 of each model, summing to 1, keep every device's
    time sum_m x[m, d] * work[m, d] under T."""
    models, devices = work.shape
    last = models * devices  # the shares, then T
    rows: list[tuple[dict[int, float], float]] = []
    for d in range(devices):
        rows.append(({**{m * devices + d: float(work[m, d]) for m in range(models)},
                      last: -1.0}, 0.0))
    for m in range(models):  # each model whole: its shares sum to 1
        shares = range(m * devices, (m + 1) * devices)
        rows.append(({i: 1.0 for i in shares}, 1.0))
        rows.append(({i: -1.0 for i in shares}, -1.0))
    values = solve_lp(last + 1, rows, [0.0] * (last + 1), [1.0] * last + [INFINITY],
                      {last: 1.0}, equal_last=False, name="the workload's lower bound")
    return values[-1]


def _path_bound(problem: Problem, graph: LayerGraph) -> float:
    """The longest chain's compute, plus a link's latency when a crossing is unavoidable."""
    devices = problem.cluster.devices
    longest: dict[str, float] = {}
    for name in graph.topological_order():
        times = [divisible_s(problem.cost, graph, name, d) for d in devices]
        if split_dim(graph, name) is None:
            own = min(times)
        else:
            speed = sum(1.0 / t for t in times if t > 0)
            own = 1.0 / speed if speed else 0.0
        longest[name] = own + max((longest[p] for p in graph.predecessors(name)), default=0.0)
    links = problem.cluster.links
    stays = sum(layer.param_bytes for layer in graph) <= problem.source_of(graph).memory_bytes
    crossing = 0.0 if stays or not links else min(link.latency_s for link in links)
    return max(longest.values(), default=0.0) + crossing
