"""EdgeFlow's progressive LP partitioning (seed 002), for any DAG on any devices.

Layers are partitioned one at a time in topological order. Every layer that can be split
(``timing.split_dim``: rows of a feature map, else channels or features) gets a share
``x_d`` of its rows on each device ``d``, chosen — with the partitions of its predecessors
fixed, and when each of their pieces is ready where — by the linear program below, solved
with HiGHS (``highspy``). Variables: ``x_d``, the start ``s_d`` of ``d``'s
piece, the layer's completion ``T``, and per predecessor ``p`` split along the same rows
the fraction ``I_pd`` of ``p`` that ``d`` must receive::

    minimise  T
    subject to  sum_d x_d = 1,   0 <= x_d <= 1
                T   >= s_d + C_d x_d                      (C_d: d computes the whole layer)
                s_d >= R_d                                (d is free)
                s_d >= F_pd                               (d's own piece of p is ready)
                s_d >= F_pe + t_ed(B_p) for every piece of p on e != d, p not row-aligned
                s_d >= F_pe + L_ed + I_pd B_p / W_ed       for the neighbours e of d's rows
                I_pd >= x_d + 2 h_p - y_pd,   I_pd >= 0    (y_pd: d's share of p; h_p: halo)

with ``F`` finish times, ``t_ed(B)`` the time to send B bytes from e to d, ``L``, ``W`` a
link's latency and bandwidth. It relaxes the integer program (whole rows, a device waits
only for inputs it reads): a device that would start only after the layer completes is
dropped and the LP solved again; the shares are rounded to whole rows (largest
remainders, every row once), in the cluster's device order so that a device's rows line
up with its rows of the layer before. The rounded split is kept when it completes sooner
than the layer run whole on its best device (both timed by ``timing.Progress``).

Memory: a device gets no part of a layer whose weights would not fit beside those it
holds and the largest activation the model needs (``reserve``); the plan records every
device's footprint in ``notes``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from edgeweave.cluster import Device
from edgeweave.errors import PlanError
from edgeweave.graph import LayerGraph
from edgeweave.planners.problem import Problem
from edgeweave.planners.timing import Progress, bands, round_shares, split_dim
from edgeweave.units import Plan, Region, build_plan, footprints, input_regions


def plan(problem: Problem, rng: random.Random) -> Plan:
    """Every layer of every model split over the devices by the progressive LP."""
    return partition(problem, "edgeflow", _lp_rows)


RowsRule = Callable[[Progress, LayerGraph, str, int, list[Device]], list[int]]


def partition(problem: Problem, name: str, rows_rule: RowsRule) -> Plan:
    """Place the layers one at a time: ``rows_rule(progress, graph, layer, dim, devices)``
    gives each device's rows of a splittable layer; the split is kept where it completes
    sooner than the whole layer on its best device."""
    progress = Progress(problem)
    for graph in problem.graphs.values():
        reserve = max(layer.input_bytes + layer.output_bytes for layer in graph)
        for layer in problem.layers(graph):
            devices = [d for d in problem.cluster.devices
                       if progress.fits(graph, layer, d, reserve)]
            if not devices:
                raise PlanError(f"No device of cluster '{problem.cluster.name}' has the "
                                f"memory for layer '{layer}' of '{graph.name}' "
                                f"({graph[layer].param_bytes} bytes of weights) besides "
                                f"what it already holds.")
            single_s, single = progress.best_single(graph, layer, devices)
            choice = [(single, Region.full(graph[layer].output_shape))]
            dim = split_dim(graph, layer)
            if dim is not None and len(devices) > 1:
                rows = rows_rule(progress, graph, layer, dim, devices)
                split = bands(graph, layer, dim, list(zip((d.name for d in devices), rows)))
                if len(split) > 1 and \
                        progress.place(graph, layer, split, commit=False) < single_s - 1e-12:
                    choice = split
            progress.place(graph, layer, choice)
    order: dict[str, list[int]] = {}
    for index, part in enumerate(progress.parts):
        order.setdefault(part.device, []).append(index)
    made = build_plan(problem.graphs, problem.cluster, progress.parts, order, planner=name,
                      options=problem.options, models=problem.models)
    split_layers = len({(p.graph, p.layers) for p in progress.parts}) - sum(
        1 for p in progress.parts
        if p.region == Region.full(problem.graphs[p.graph][p.layers[-1]].output_shape))
    notes = {"split_layers": split_layers,
             "footprint_bytes": {d: f.weight_bytes + f.peak_activation_bytes
                                 for d, f in footprints(made).items()}}
    return dataclasses.replace(made, notes=notes)


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
    # variables: x_0..x_n-1, s_0..s_n-1, T, then one I per (aligned predecessor, device)
    compute = [problem.cost.compute_s(graph, node, d) for d in devices]
    earliest = [progress.device_free.get(name, 0.0) for name in names]
    rows: list[tuple[dict[int, float], float]] = []  # sum(coef * var) <= bound
    extra = 0
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
        for k, device in enumerate(devices):
            own = sum(p.region.shape[dim] for p in holders if p.device == device.name) / extent
            earliest[k] = max([earliest[k], *(p.finish_s for p in holders
                                              if p.device == device.name)])
            variable = 2 * n + 1 + extra
            extra += 1
            rows.append(({k: 1.0, variable: -1.0}, own - 2 * halo))  # I >= x + 2h - y
            for piece in _neighbours(holders, device.name, names):
                link = problem.cluster.link(piece.device, device.name)
                per_share = 8.0 * graph[producer].output_bytes / link.bandwidth_bps
                rows.append(({n + k: -1.0, variable: per_share},
                             -(piece.finish_s + link.latency_s)))
    for k in range(n):  # T >= s_k + C_k x_k
        rows.append(({n + k: 1.0, k: compute[k], 2 * n: -1.0}, 0.0))
    size = 2 * n + 1 + extra
    lower = [0.0] * n + earliest + [0.0] * (1 + extra)
    upper = [1.0] * n + [_INFINITY] * (n + 1 + extra)
    rows.append(({k: 1.0 for k in range(n)}, 1.0))  # sum x = 1, as <= with >= below
    values = _highs(size, rows, lower, upper, objective=2 * n, equal_last=True, name=layer)
    shares, finish = values[:n], values[2 * n]
    dropped = {k for k in range(n) if shares[k] < 1e-9 and values[n + k] >= finish - 1e-9}
    return shares, dropped


_INFINITY = 1e30


def _highs(size: int, rows: list[tuple[dict[int, float], float]], lower: list[float],
           upper: list[float], objective: int, equal_last: bool, name: str) -> list[float]:
    """Minimise variable ``objective`` subject to ``sum(coef * var) <= bound`` for each row
    (the last one an equality when ``equal_last``), with HiGHS."""
    import highspy
    import numpy as np

    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = size, len(rows)
    cost = np.zeros(size)
    cost[objective] = 1.0
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, np.array(lower), np.array(upper)
    bounds = np.array([bound for _, bound in rows])
    row_lower = np.full(len(rows), -_INFINITY)
    if equal_last:
        row_lower[-1] = bounds[-1]
    lp.row_lower_, lp.row_upper_ = row_lower, bounds
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.cumsum([0, *(len(c) for c, _ in rows)])
    lp.a_matrix_.index_ = np.array([i for c, _ in rows for i in c], dtype=np.int32)
    lp.a_matrix_.value_ = np.array([v for c, _ in rows for v in c.values()])
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.passModel(lp)
    solver.run()
    if solver.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise PlanError(f"The LP for layer '{name}' has no optimum: "
                        f"{solver.modelStatusToString(solver.getModelStatus())}.")
    return list(solver.getSolution().col_value)


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


def _neighbours(holders, device: str, order: Sequence[str]):
    """The pieces of other devices next to ``device``'s rows: the last one before it and
    the first one after it in the device order (where its rows will go)."""
    rank = {name: i for i, name in enumerate(order)}
    mine = rank.get(device, -1)
    others = [p for p in holders if p.device != device]
    before = [p for p in others if rank.get(p.device, -1) < mine]
    after = [p for p in others if rank.get(p.device, len(order)) > mine]
    return [*before[-1:], *after[:1]] or others[:1]
