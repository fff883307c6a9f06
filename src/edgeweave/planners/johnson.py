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

from edgeweave.errors import GraphError
from edgeweave.graph import LayerGraph, Structure

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
