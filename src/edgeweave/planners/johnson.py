"""The Extended Johnson schedule of seed 001 (Wang, Duan and Wu), and its exact reference.

With a cut fixed, every path of a multi-path DNN is a job of three stages run in that
order — local compute on the device (p1), transmission of the cut tensor (p2), remote
compute on the server (p3) — and device, link and server each do one thing at a time.
The seed's Theorem 2 makes the best schedule a permutation of whole paths, so finding it
is the three-machine permutation flow shop: NP-hard (Theorem 1), and Extended Johnson
(Algorithm 1) is the seed's answer — optimal when stage 2 is dominated (Theorem 3), within
5/3 of optimal otherwise (Theorem 4).

This module holds the scheduling on stage times and the decomposition of a multi-path
graph into its paths; the planner around them (cuts, graph conversion) builds on both.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from edgeweave.cluster import Device
from edgeweave.errors import GraphError
from edgeweave.graph import LayerGraph, Structure
from edgeweave.planners.problem import Problem
from edgeweave.units import Part, Plan, build_plan, whole

Stages = tuple[float, float, float]  # (p1, p2, p3) of one path


def extended_johnson(paths: Sequence[Stages]) -> list[int]:
    """Algorithm 1: the order (indices into ``paths``) in which to process the paths.

    H holds the paths with p1 + p2 <= p2 + p3, sorted increasingly by p1 + p2; L the
    others, sorted decreasingly by p2 + p3; the schedule is H then L. Ties keep the
    paths' given order.
    """
    early = [i for i, (p1, p2, p3) in enumerate(paths) if p1 + p2 <= p2 + p3]
    late = [i for i, (p1, p2, p3) in enumerate(paths) if p1 + p2 > p2 + p3]
    early.sort(key=lambda i: paths[i][0] + paths[i][1])
    late.sort(key=lambda i: -(paths[i][1] + paths[i][2]))
    return early + late


def makespan(paths: Sequence[Stages], order: Sequence[int]) -> float:
    """When the last path's remote compute ends, processing ``paths`` in ``order`` with
    each stage's resource doing one path at a time and every path's stages in sequence."""
    device = link = server = 0.0
    for i in order:
        p1, p2, p3 = paths[i]
        device += p1
        link = max(link, device) + p2
        server = max(server, link) + p3
    return server


def stage_two_dominated(paths: Sequence[Stages]) -> bool:
    """Theorem 3's condition, under which Extended Johnson is optimal:
    max(min p1, min p3) >= max p2."""
    if not paths:
        return True
    return max(min(p[0] for p in paths), min(p[2] for p in paths)) >= max(p[1] for p in paths)


def optimal_order(paths: Sequence[Stages], limit: int = 8) -> list[int]:
    """The order of least makespan, by trying every permutation (at most ``limit``
    paths: the exact reference for measuring Extended Johnson's gap)."""
    if len(paths) > limit:
        raise ValueError(f"{len(paths)} paths are too many to enumerate (limit {limit}).")
    best = min(itertools.permutations(range(len(paths))), key=lambda o: makespan(paths, o))
    return list(best)


@dataclass(frozen=True)
class MultiPath:
    """A multi-path graph's layers: the chain up to and including the fork (empty when the
    model's several inputs are the fork), the paths between fork and join (a path may be
    empty: a connection straight from fork to join), and the chain from the join on (empty
    when the model's several outputs are the join)."""

    head: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]
    tail: tuple[str, ...]


def decompose(graph: LayerGraph) -> MultiPath:
    """The head, paths and tail of a multi-path graph (seed 001's paths: layers in
    sequence between the fork and the join, no two paths sharing a layer)."""
    if graph.structure is not Structure.MULTI_PATH:
        raise GraphError(f"Graph '{graph.name}' is {graph.structure}, not multi-path.")
    order = graph.topological_order()
    forks = [n for n in order if len(graph.successors(n)) > 1]
    joins = [n for n in order if len(graph.predecessors(n)) > 1]
    fork = forks[0] if forks else None  # None: the several inputs fork
    join = joins[0] if joins else None  # None: the several outputs join
    starts = graph.successors(fork) if fork is not None else graph.inputs
    paths = []
    for start in starts:
        path: list[str] = []
        node = start
        while node != join:
            path.append(node)
            following = graph.successors(node)
            if not following:
                break
            node = following[0]
        paths.append(tuple(path))
    head = tuple(order[:order.index(fork) + 1]) if fork is not None else ()
    tail = tuple(order[order.index(join):]) if join is not None else ()
    return MultiPath(head, tuple(paths), tail)


@dataclass(frozen=True)
class Schedule:
    """Where each path is cut (its first ``cuts[i]`` layers on the device, the rest on the
    server), the Extended Johnson order of the paths, and their stage times."""

    cuts: tuple[int, ...]
    order: tuple[int, ...]
    stages: tuple[Stages, ...]

    @property
    def makespan_s(self) -> float:
        """From the fork to the last path's remote compute."""
        return makespan(self.stages, self.order)


def path_stages(problem: Problem, graph: LayerGraph, parts: MultiPath, index: int, cut: int,
                device: Device, server: Device) -> Stages:
    """(p1, p2, p3) of path ``index`` cut after its first ``cut`` layers: local compute,
    the transfer of the tensor that crosses (the path's last local output, or the fork's
    output when nothing of the path is local), remote compute."""
    path = parts.paths[index]
    link = problem.cluster.link(device.name, server.name)
    local = sum(problem.cost.compute_s(graph, graph[n], device) for n in path[:cut])
    remote = sum(problem.cost.compute_s(graph, graph[n], server) for n in path[cut:])
    crossing = path[cut - 1] if cut > 0 else parts.head[-1]
    return local, problem.cost.transfer_s(graph[crossing].output_bytes, link), remote


def schedule(problem: Problem, graph: LayerGraph, parts: MultiPath, device: Device,
             server: Device) -> Schedule:
    """Cuts and order for the paths: start from each path's own best cut, then change one
    path's cut at a time — re-running Extended Johnson for each trial — while the makespan
    falls (a local optimum: no single-path change improves it)."""
    def lowest(index: int) -> int:  # a path that starts at a model input keeps it local
        return 1 if graph[parts.paths[index][0]].kind == "input" else 0

    def stages_of(cuts: Sequence[int]) -> tuple[Stages, ...]:
        return tuple(path_stages(problem, graph, parts, i, k, device, server)
                     for i, k in enumerate(cuts))

    def span(cuts: Sequence[int]) -> float:
        stages = stages_of(cuts)
        return makespan(stages, extended_johnson(stages))

    cuts = [min(range(lowest(i), len(path) + 1),
                key=lambda k, i=i: sum(path_stages(problem, graph, parts, i, k, device, server)))
            for i, path in enumerate(parts.paths)]
    best = span(cuts)
    improved = True
    while improved:
        improved = False
        for i, path in enumerate(parts.paths):
            for k in range(lowest(i), len(path) + 1):
                trial = [*cuts[:i], k, *cuts[i + 1:]]
                if (value := span(trial)) < best - 1e-12:
                    cuts, best, improved = trial, value, True
    stages = stages_of(cuts)
    return Schedule(tuple(cuts), tuple(extended_johnson(stages)), stages)


def multipath_plan(problem: Problem, graph: LayerGraph) -> tuple[Plan, Schedule]:
    """A multi-path graph planned as seed 001 does: the head on the input device, each path
    cut by ``schedule`` and processed in Extended Johnson order on device, link and server,
    the tail on the server (the fastest device)."""
    device, server = problem.source, problem.fastest()
    parts = decompose(graph)
    plan_of = schedule(problem, graph, parts, device, server)
    placed: list[Part] = []
    order: dict[str, list[int]] = {device.name: [], server.name: []}

    def place(layers: Sequence[str], where: Device) -> None:
        for name in layers:
            if graph[name].kind != "input":
                order[where.name].append(len(placed))
                placed.append(whole(graph, name, where.name))

    place(parts.head, device)
    for i in plan_of.order:
        place(parts.paths[i][:plan_of.cuts[i]], device)
    for i in plan_of.order:
        place(parts.paths[i][plan_of.cuts[i]:], server)
    place(parts.tail, server)
    made = build_plan({graph.name: graph}, problem.cluster, placed, order, planner="johnson",
                      options=problem.options, models=problem.models)
    return made, plan_of
