"""The fitness of seed 000's offloading search: a workload's completion time under many
block -> device assignments at once.

A list schedule of the pieces on the cost model, the simulator's rules in miniature: each
piece, in a fixed order (descending upward rank), starts when its device is free and what
it reads has arrived; each transfer is booked on its link or shared medium; a device
receives a region once however many of its pieces read it; a model is done when its
outputs are back at its source. The search evaluates tens of thousands of assignments, so
the schedule is one loop compiled with numba (imported on first use): a few microseconds
per assignment where numpy over the swarm took milliseconds per call.
"""

from __future__ import annotations

import functools

import numpy as np

from edgeweave.planners.multilevel import Blocks
from edgeweave.planners.pieces import PieceGraph
from edgeweave.planners.problem import Problem
from edgeweave.units import Region


class Fitness:
    """The workload's objective under block -> device assignments (one row each)."""

    def __init__(self, problem: Problem, pieces: PieceGraph, blocks: Blocks,
                 order: list[int], seconds: list[dict[str, float]],
                 other_sources: bool = True, queue_transfers: bool = True) -> None:
        names = problem.cluster.names
        self.devices = len(names)
        self.compute = np.array([[s[d] for d in names] for s in seconds])
        self.per_byte = np.zeros((self.devices, self.devices))
        self.latency = np.zeros((self.devices, self.devices))
        channels: dict[str, int] = {}
        # a device's own "channel" is the last one: never waited on (nothing is sent)
        self.channel = np.full((self.devices, self.devices), -1, dtype=np.int64)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i != j:
                    link = problem.cluster.link(a, b)
                    self.per_byte[i, j] = 8.0 / link.bandwidth_bps
                    self.latency[i, j] = link.latency_s
                    self.channel[i, j] = channels.setdefault(link.channel, len(channels))
        self.channels = len(channels) + 1
        self.channel[self.channel < 0] = len(channels)
        # what each piece reads, as rows (producer, bytes, key) from read_start[piece] on;
        # the key names the region read, which a device receives once
        keys: dict[tuple[int, Region], int] = {}
        reads: list[list[tuple[int, float, int]]] = [[] for _ in pieces.pieces]
        for producer, consumer, size in pieces.edges:
            region = pieces.regions[producer, consumer]
            reads[consumer].append((producer, float(size),
                                    keys.setdefault((producer, region), len(keys))))
        self.keys = len(keys)
        self.read_start = np.cumsum([0] + [len(r) for r in reads]).astype(np.int64)
        flat = [row for r in reads for row in r]
        self.read_producer = np.array([r[0] for r in flat], dtype=np.int64)
        self.read_size = np.array([r[1] for r in flat], dtype=float)
        self.read_key = np.array([r[2] for r in flat], dtype=np.int64)
        self.block_of = np.array(blocks.block_of, dtype=np.int64)
        source = {g.name: names.index(problem.source_of(g).name)
                  for g in problem.graphs.values()}
        # a model input stays on its model's source (-1: the piece's block decides)
        self.fixed = np.array([source[p.graph] if p.is_input else -1 for p in pieces.pieces],
                              dtype=np.int64)
        # the workload's objective (units.workload.objective_s) over each model's frame 0
        models = list(problem.graphs)
        streams = [problem.streams[m] for m in models]
        self.arrival = np.array([s.arrival_s(0) for s in streams])
        self.weight = np.array([s.weight for s in streams])
        self.deadline = np.array([np.inf if s.deadline_s is None else s.deadline_s
                                  for s in streams])
        self.release = np.array([self.arrival[models.index(piece.graph)] if piece.is_input
                                 else 0.0 for piece in pieces.pieces])
        # as in the plan (build_plan): a device takes its inputs first, as they arrive
        inputs = sorted((p for p in order if pieces.pieces[p].is_input), key=self.release.item)
        self.order = np.array(inputs + [p for p in order if not pieces.pieces[p].is_input],
                              dtype=np.int64)
        back = []  # (piece, its model, its source, bytes of outputs it sends back)
        for p, piece in enumerate(pieces.pieces):
            graph = problem.graphs[piece.graph]
            if piece.layers[-1] in graph.outputs and not piece.is_input:
                back.append((p, models.index(piece.graph), source[piece.graph],
                             piece.region.numel * graph[piece.layers[-1]].itemsize))
        self.back = np.array([b[:3] for b in back], dtype=np.int64).reshape(-1, 3)
        self.back_size = np.array([b[3] for b in back], dtype=float)
        # the devices each block may run on: all, or (not ``other_sources``) its own
        # model's source and the devices that are no model's source — the authors' set
        # (the request device, the helpers, the server)
        self.home = np.array([source[pieces.pieces[members[0]].graph]
                              for members in blocks.members()], dtype=int)
        self.allowed = np.ones((blocks.count, self.devices), dtype=bool)
        if not other_sources:
            self.allowed[:, list(set(source.values()))] = False
            self.allowed[np.arange(blocks.count), self.home] = True
        self.choices = [np.flatnonzero(row) for row in self.allowed]
        # False: the authors' rule (their cpplib's ready time): every transfer at its link's
        # full rate from its producer's finish, none waiting for another
        self.queue_transfers = queue_transfers
        self.evaluations = 0

    def __call__(self, genomes: np.ndarray) -> np.ndarray:
        """The objective of each row of ``genomes`` (a device index per block): the
        largest weighted latency of the models' frame 0, plus any deadline overruns."""
        genomes = np.ascontiguousarray(genomes, dtype=np.int64)
        self.evaluations += len(genomes)
        return _kernel()(genomes, self.block_of, self.fixed, self.order, self.read_start,
                         self.read_producer, self.read_size, self.read_key, self.compute,
                         self.per_byte, self.latency, self.channel, self.channels, self.keys,
                         self.queue_transfers, self.release, self.back, self.back_size,
                         self.arrival, self.weight, self.deadline)


def _schedule(genomes, block_of, fixed, order, read_start, read_producer, read_size,
              read_key, compute, per_byte, latency, channel, channels, keys, queued, release,
              back, back_size, arrival, weight, deadline):  # pragma: no cover - compiled
    """The list schedule of every row; compiled by ``_kernel``."""
    count, pieces, devices = genomes.shape[0], block_of.shape[0], compute.shape[1]
    models = arrival.shape[0]
    result = np.empty(count)
    device = np.empty(pieces, dtype=np.int64)
    finish = np.zeros(pieces)
    free = np.zeros(devices)
    busy = np.zeros(channels)
    got = np.empty((keys, devices))
    done = np.empty(models)
    for row in range(count):
        for p in range(pieces):
            device[p] = fixed[p] if fixed[p] >= 0 else genomes[row, block_of[p]]
        free[:] = 0.0
        busy[:] = 0.0
        got[:, :] = np.inf
        for piece in order:
            here = device[piece]
            ready = 0.0
            for r in range(read_start[piece], read_start[piece + 1]):
                producer, key = read_producer[r], read_key[r]
                there = device[producer]
                if there == here:
                    arrive = finish[producer]
                elif got[key, here] < np.inf:
                    arrive = got[key, here]
                else:
                    link = channel[there, here]
                    begin = max(finish[producer], busy[link]) if queued else finish[producer]
                    sent = begin + read_size[r] * per_byte[there, here]
                    busy[link] = sent
                    arrive = sent + latency[there, here]
                    got[key, here] = arrive
                ready = max(ready, arrive)
            start = max(max(ready, free[here]), release[piece])
            finish[piece] = start + compute[piece, here]
            free[here] = finish[piece]
        done[:] = 0.0
        for b in range(back.shape[0]):
            piece, model, source = back[b, 0], back[b, 1], back[b, 2]
            there = device[piece]
            end = finish[piece]
            if there != source:
                end += back_size[b] * per_byte[there, source] + latency[there, source]
            done[model] = max(done[model], end)
        worst, overrun = -np.inf, 0.0
        for m in range(models):
            late = done[m] - arrival[m]
            worst = max(worst, late * weight[m])
            overrun += max(0.0, late - deadline[m])
        result[row] = worst + overrun
    return result


@functools.cache
def _kernel():
    """``_schedule`` compiled (numba is imported here, not when edgeweave is)."""
    import numba

    return numba.njit(cache=True)(_schedule)
