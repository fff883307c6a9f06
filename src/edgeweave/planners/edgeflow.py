"""EdgeFlow's progressive LP partitioning (seed 002), for any DAG on any devices.

Layers are partitioned one at a time in topological order. Every layer that can be split
(``progressive.split_dim``: rows of a feature map, else channels or features) gets a share
``x_d`` of its rows on each device ``d``, chosen — with the partitions of its predecessors
fixed, and when each of their pieces is ready where — by the linear program below, solved
with HiGHS (``highspy``). Bands follow the cluster's device order, so device ``d``'s rows
are ``[a_d, b_d)`` with ``a_d = sum_{j<d} x_j``, ``b_d = a_d + x_d`` (as shares). Variables:
``x_d``, the start ``s_d`` of ``d``'s piece, the layer's completion ``T``, and per
predecessor ``p`` read band to band (a conv, pool, element-wise op, concatenation or
upsampling of a map split along the same rows) the shares ``u_pd``, ``v_pd`` of ``p``
that ``d`` must receive from the devices before and after its own rows of ``p``
(``[alpha_pd, beta_pd)``; ``h_p``: the halo a band reads beyond its rows)::

    minimise  T + w * (seconds of transfers)
    subject to  sum_d x_d = 1,   0 <= x_d <= 1
                T   >= s_d + o_d + C_d x_d (+ x_d O / W_d0 + L_d0 for an output, sent back)
                s_d >= R_d,   s_d >= F_pd                 (d free; its own piece of p ready)
                s_d >= F_pe + t_ed(B_pe)    for each piece of p on e != d, p read whole
                u_pd >= alpha_pd + h_p - a_d,   v_pd >= b_d + h_p - beta_pd,   u, v >= 0
                s_d >= F_pe + L_ed + u_pd B_p / W_ed        (e: the piece before d's)
                s_d >= F_pe + L_ed + v_pd B_p / W_ed        (e: the piece after d's)
                T   >= t0_m + sum of the transfers on shared medium m

(``C_d``: time for d to compute the whole layer; ``o_d``: d's per-segment overhead, which
a band of a split pays as it reads from its neighbours; ``R_d``: when d is free; ``F``: when a
piece is ready; ``t_ed(B)``: time to send B bytes; ``L``, ``W``: a link's latency and
bandwidth; a device that holds none of ``p`` needs ``x_d + 2 h_p`` from its neighbours.)
The small weight ``w`` on the data moved picks, among splits that finish (nearly) together,
the one that keeps each device's rows where they were — a cheap layer has many optimal
splits, and scattering its rows makes the next layers gather them.

It is the relaxation of the integer program (whole rows; a device waits only for what it
reads): a device that would start only after the layer completes is dropped and the LP
solved again; the shares are rounded to whole rows (largest remainders, every row once).
The rounded split is kept when it completes sooner than the whole layer on its best
device, both timed by ``progressive.Progress`` (the simulator's rules). Last, the whole
plan is compared with every layer on one device, which the layer-by-layer view cannot
weigh (moving the input once can pay over all the layers to come).

Memory: a device gets no part of a layer whose weights would not fit beside those it
holds and the largest activation the model needs; the plan records every device's
footprint in ``notes``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from edgeweave.cluster import Device
from edgeweave.graph import LayerGraph
from edgeweave.planners.lp import INFINITY, solve_lp
from edgeweave.planners.problem import Problem
from edgeweave.planners.progressive import Progress, on_one_device, partition, round_shares
from edgeweave.units import Plan, Region, input_regions


def plan(problem: Problem, rng: random.Random) -> Plan:
    """Every layer of every model split over the devices by the progressive LP — or, where
    the simulator finds it sooner, the whole workload on one device.
    ``notes["chosen"]`` says which."""
    split = partition(problem, _lp_rows).plan("edgeflow")
    candidates = [("progressive LP", split)]
    for device in problem.cluster.devices:  # only devices whose compute alone is sooner
        if 1e3 * sum(problem.graph_s(g, device) for g in problem.graphs.values()) \
                < split.notes["predicted_ms"]:
            alone = on_one_device(problem, device)
            if alone is not None:
                candidates.append((f"all on {device.name}", alone.plan("edgeflow")))
    chosen, made = min(candidates, key=lambda c: c[1].notes["predicted_ms"])  # first of equals
    return dataclasses.replace(made, notes={**made.notes, "chosen": chosen,
                                            "summary": f"{chosen}: {made.notes['summary']}"})


def _lp_rows(progress: Progress, graph: LayerGraph, layer: str, dim: int,
             devices: list[Device]) -> list[int]:
    """Whole rows per device from the LP's shares."""
    active = list(range(len(devices)))
    while True:
        shares, dropped = _solve(progress, graph, layer, dim, [devices[i] for i in active])
        if not dropped or len(active) == 1:
            break
        active = [i for k, i in enumerate(active) if k not in dropped]
    full = [0.0] * len(devices)
    for k, i in enumerate(active):
        full[i] = shares[k]
    total = sum(full)
    return round_shares([s / total for s in full], graph[layer].output_shape[dim])


def _solve(progress: Progress, graph: LayerGraph, layer: str, dim: int,
           devices: Sequence[Device]) -> tuple[list[float], set[int]]:
    """The LP's shares, and the devices that only delay the layer (share 0, start >= T)."""
    problem, node = progress.problem, graph[layer]
    n = len(devices)
    names = [d.name for d in devices]
    # variables: x_0..x_n-1, s_0..s_n-1, T, then the shares each device must receive
    compute = [problem.cost.compute_s(graph, node, d) for d in devices]
    earliest = [progress.device_free.get(name, 0.0) for name in names]
    rows: list[tuple[dict[int, float], float]] = []  # sum(coef * var) <= bound
    traffic: dict[int, float] = {}  # need variable -> seconds to receive all of its producer
    # shared medium -> (need variable -> seconds per unit, earliest a transfer can start)
    media: dict[str, tuple[dict[int, float], float]] = {}
    extra, slowest = 0, _slowest(problem, devices)
    for position, producer in enumerate(node.inputs):
        pieces = progress.held(graph, producer)
        halo = _halo(graph, layer, dim, producer, position)
        if halo is None or not all(_is_band(graph, producer, p.region, dim) for p in pieces):
            for k, device in enumerate(devices):  # d needs all of p: constants
                for piece in pieces:
                    if piece.device == device.name:
                        earliest[k] = max(earliest[k], piece.finish_s)
                    else:
                        size = piece.region.numel * graph[producer].itemsize
                        link = problem.cluster.link(piece.device, device.name)
                        earliest[k] = max(earliest[k], piece.finish_s
                                          + problem.cost.transfer_s(size, link))
            continue
        extent = graph[producer].output_shape[dim]
        holders = sorted(pieces, key=lambda p: p.region.bounds[dim][0])
        per_share = 8.0 * graph[producer].output_bytes
        for k, device in enumerate(devices):
            mine = [p for p in holders if p.device == device.name]
            left, right = _around(holders, device.name, problem.cluster.names)
            # each need: (holders it comes from, coefficients c, bound) for the row
            # sum_j c_j x_j - need <= bound, i.e. need >= the rows missing on that side
            if mine:  # rows [a, b) read [a - h, b + h); d holds [alpha, beta)
                earliest[k] = max(earliest[k], mine[0].finish_s)
                alpha, beta = (bound / extent for bound in mine[0].region.bounds[dim])
                needs = [([left], {j: -1.0 for j in range(k)}, -(alpha + halo)),
                         ([right], {j: 1.0 for j in range(k + 1)}, beta - halo)]
            else:  # d holds none of it: all of [a - h, b + h) comes from its neighbours
                needs = [([left, right], {k: 1.0}, -2 * halo)]
            for sources, coefficients, bound in needs:
                sources = [holder for holder in sources if holder is not None]
                if not sources:
                    continue
                variable = 2 * n + 1 + extra
                extra += 1
                traffic[variable] = per_share / slowest
                rows.append(({**coefficients, variable: -1.0}, bound))
                for holder in sources:  # s_d >= F_e + L_ed + need * B / W_ed
                    link = problem.cluster.link(holder.device, device.name)
                    rows.append(({n + k: -1.0, variable: per_share / link.bandwidth_bps},
                                 -(holder.finish_s + link.latency_s)))
                    if link.medium is not None:
                        spent, start = media.get(link.medium, ({}, INFINITY))
                        spent[variable] = per_share / link.bandwidth_bps
                        free = progress.channel_free(link.medium)
                        media[link.medium] = (spent, min(start, max(holder.finish_s, free)))
    source = problem.source_of(graph).name
    for k, device in enumerate(devices):  # T >= s_k + o_k + C_k x_k (+ the way back)
        back, delay = 0.0, device.segment_overhead_s  # a band of a split starts a segment
        if layer in graph.outputs and device.name != source:
            link = problem.cluster.link(device.name, source)
            back = problem.cost.occupancy_s(node.output_bytes, link)
            delay += link.latency_s
        rows.append(({n + k: 1.0, k: compute[k] + back, 2 * n: -1.0}, -delay))
    for spent, start in media.values():  # a shared medium carries one transfer at a time
        rows.append(({**spent, 2 * n: -1.0}, -start))
    size = 2 * n + 1 + extra
    lower = [0.0] * n + earliest + [0.0] * (1 + extra)
    upper = [1.0] * n + [INFINITY] * (n + 1 + extra)
    rows.append(({k: 1.0 for k in range(n)}, 1.0))  # sum x = 1, as <= with >= below
    # T first; among (nearly) equal completions, the least data moved — without it the
    # many optima of a cheap layer scatter its rows and the next layers pay to gather them
    objective = {2 * n: 1.0, **{v: TRAFFIC_WEIGHT * t for v, t in traffic.items()}}
    values = solve_lp(size, rows, lower, upper, objective, equal_last=True,
                      name=f"layer '{layer}'")
    shares, finish = values[:n], values[2 * n]
    dropped = {k for k in range(n) if shares[k] < 1e-9 and values[n + k] >= finish - 1e-9}
    return shares, dropped


TRAFFIC_WEIGHT = 0.5  # seconds of completion one second of transfers is worth


def _slowest(problem: Problem, devices: Sequence[Device]) -> float:
    """The lowest bandwidth between any two of ``devices`` (bits/s)."""
    names = [d.name for d in devices]
    return min((problem.cluster.link(a, b).bandwidth_bps for a in names for b in names
                if a < b), default=1.0)


def _halo(graph: LayerGraph, layer: str, dim: int, producer: str, position: int
          ) -> float | None:
    """The halo, as a share of the producer's rows, that a band of the layer reads beyond
    its own rows on each side — None when a band does not read a band of the producer."""
    node, shape = graph[layer], graph[producer].output_shape
    if shape is None or len(shape) != len(node.output_shape):
        return None
    rows = node.output_shape[dim]
    middle = Region.full(node.output_shape).along(dim, rows // 2, rows // 2 + 1)
    read = input_regions(node, middle)[position].clip(shape).bounds[dim]
    if read == (0, shape[dim]) and shape[dim] > 1:
        return None
    return max(0.0, (read[1] - read[0] - shape[dim] / rows) / 2) / shape[dim]


def _is_band(graph: LayerGraph, producer: str, region: Region, dim: int) -> bool:
    full = Region.full(graph[producer].output_shape)
    return all(b == f for i, (b, f) in enumerate(zip(region.bounds, full.bounds)) if i != dim)


def _around(holders, device: str, order: Sequence[str]):
    """The pieces of other devices just before and just after where ``device``'s rows lie
    (bands follow the cluster's device order)."""
    rank = {name: i for i, name in enumerate(order)}
    others = [p for p in holders if p.device != device]
    before = [p for p in others if rank[p.device] < rank[device]]
    after = [p for p in others if rank[p.device] > rank[device]]
    return (before[-1] if before else None), (after[0] if after else None)
