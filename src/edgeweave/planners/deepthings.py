"""DeepThings' fused tile partitioning (FTP, seed 003): the first layers in a grid of
tiles, each tile's whole fused stack one execution unit.

Zhao, Mirzazad Barijough and Gerstlauer (IEEE TCAD 2018) cut the output map of the L-th
layer into an N x M grid — step ``ceil(size / N)``, the last row or column taking what is
left (``grid()`` in the authors' code) — and walk each tile back through the fused layers
to the input region it needs (``traversal()``), so that one device computes a tile's
whole stack from one input region and the intermediate maps never leave it; a gateway
merges the tiles and runs the remaining layers. The original assumes "same" padding and
pools whose size equals their stride; here the receptive fields come from the region
arithmetic (``units.region``), for any stride, kernel, padding and dilation and for grids
that do not divide the map.

Options:

- ``n``, ``m``: the grid's rows and columns; ``layers``: L, the layers fused from the
  input (in topological order; a convolution, its batch norm and its activation count as
  three). Any of them ``None``: chosen for the cluster — every grid N x N up to
  ``max_grid`` and every L at which the fused layers hand one map to the rest of the
  model (at most ``MAX_CUTS`` of them, evenly spread), ranked by a quick estimate (the
  tiles' list-scheduled makespan, their outputs' hop to the gateway, the rest on the
  gateway), the best ``SIMULATED`` simulated and the fastest kept. A model whose first layer has no
  feature map to tile (or that has no such L) gets no tiles: ``after`` plans all of it.
- ``after``: who runs the layers after the cut: ``"gateway"`` (all of them on the gateway,
  as the original does), or any other planner's name — that planner plans the model, and
  its units past the cut are kept (trimmed of fused layers), so the rest is split too.
- ``gateway``: the device that merges tiles and runs the rest (default: the fastest or
  the source, whichever simulates faster).
- ``gateway_tiles``: whether the gateway computes tiles too (default True; the
  original's gateway only merges them and runs the rest).
- ``reuse``: the original's data reuse — tiles in a checkerboard, each odd tile's layers
  shrunk by the strips its even neighbours computed, which it reads from inside their
  stacks (default False).

- ``steal``: decide at run time who computes each tile, as the original does (work
  stealing, WST; default False). Every tile is queued on its model's source device,
  where the frame arrives, and is stealable (``Plan.pool``) by every device that computes
  tiles: an idle one asks a source for the next tile and its input region
  (``units.stealing``, the same rules in the simulator and the local backend). With
  ``reuse`` too (WST-S): the even tiles are queued first, each odd tile's chain of
  layers is one task, opened once its even neighbours' strips are back at the source
  (whoever computed them sends them there, as the original sends them to the gateway);
  the original runs an odd tile unshrunk when the strips are late, here it waits for
  them unless ``fallback`` (default False) is set too: then an odd tile whose strips are
  not at its home when a device reaches it (the home, or a taker with no open tile left
  to take) runs unshrunk, as one fused stack from the frame (``Plan.fallback``). Several cameras are several models, each with its source
  (``plan(..., sources=...)``); tiles of one camera are list-scheduled without regard to
  the others' when not stolen.

- ``share``: DeepThings' work sharing (WSH), its baseline: each frame's tiles collected on
  the gateway (a *relay* of the model's input there, when the input arrives elsewhere)
  and handed out equally, round robin over the devices that compute tiles, whatever
  their speed (default False; not with ``steal``).

Without stealing or sharing a plan fixes the tiles' devices: tiles, dearest first, each go
to the device that would finish it soonest by the cost model (list scheduling), the data's
hop from the source included.

``notes`` give the grid, L, each tile's FLOPs and input bytes, and ``redundancy``: the
FLOPs all tiles compute over the fused layers' own — what overlapping receptive fields
recompute (the seed: about 1.53 at 3x3 and 2.2 at 5x5 over YOLOv2's first 16 layers at
608x608).

>>> import edgeweave as ew
>>> m, x = ew.models.get("line")
>>> plan = ew.plan(ew.trace(m, x), "x86-core*2@ethernet", planner="deepthings", n=2, m=2)
>>> plan.notes["grid"]
'2x2'
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

from edgeweave.cluster import Device
from edgeweave.errors import PlanError
from edgeweave.graph import LayerGraph, OpKind
from edgeweave.planners.problem import Problem
from edgeweave.units.stealing import outside_needs, tasks
from edgeweave.units import (Part, Plan, Region, build_plan, footprints, relay,
                             required_regions, validate)

SIMULATED = 3  # candidates simulated in full, the best of a quick estimate
MAX_CUTS = 12  # depths tried when L is chosen, evenly spread over the valid ones

# kinds whose output region reads a nearby region of their inputs: a tile stays a tile
_LOCAL = {OpKind.CONV, OpKind.POOL, OpKind.ELEMENTWISE, OpKind.CONCAT, OpKind.UPSAMPLE}


def grid(size: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive ranges over ``size``: step ``ceil(size / parts)``, the last
    taking what is left (DeepThings' ``grid()``); fewer when the step leaves none."""
    step = math.ceil(size / parts)
    return [(start, min(size, start + step)) for start in range(0, size, step)]


def tiles(shape: Sequence[int], n: int, m: int) -> list[Region]:
    """The N x M tiles of a map of ``shape`` (batch, channels, height, width), row by row."""
    full = Region.full(shape)
    return [full.along(2, r0, r1).along(3, c0, c1)
            for r0, r1 in grid(shape[2], n) for c0, c1 in grid(shape[3], m)]


def cut_points(graph: LayerGraph, layers: Sequence[str]) -> list[int]:
    """Every L at which the first L layers can be fused into tiles: each is spatially
    local with a feature map, and only the L-th is read after them."""
    found, inside = [], set()
    for count, name in enumerate(layers, 1):
        layer = graph[name]
        shape = layer.output_shape
        if layer.kind not in _LOCAL or shape is None or len(shape) != 4:
            break
        inside.add(name)
        read_after = {p for n in layers[count:] for p in graph[n].inputs if p in inside}
        if read_after | (inside & set(graph.outputs)) <= {name}:
            found.append(count)
    return found


def _tile_s(problem: Problem, graph: LayerGraph, layers: tuple[str, ...],
            regions: dict[str, Region], device: Device) -> float:
    """A tile's compute on ``device`` (``regions``: what each layer computes) and, away
    from the model's source, its input's hop."""
    seconds = sum(problem.cost.compute_s(graph, graph[name], device,
                                         regions[name].numel / math.prod(graph[name].output_shape))
                  for name in layers)
    source = problem.source_of(graph).name
    if device.name != source:
        link = problem.cluster.link(source, device.name)
        seconds += device.segment_overhead_s + problem.cost.transfer_s(
            _input_bytes(graph, layers, regions), link)
    return seconds


def _input_bytes(graph: LayerGraph, layers: tuple[str, ...], regions: dict[str, Region]) -> int:
    """Bytes a tile's stack reads from outside it (the regions of the maps it starts from)."""
    return sum(region.numel * graph[name].itemsize for name, region in regions.items()
               if name not in layers)


def shrunk(region: Region, computed: Sequence[Region]) -> Region:
    """``region`` less the strips along its sides that ``computed`` regions already cover
    (each spanning the region's whole other extent), as DeepThings' odd tiles shrink by
    their four neighbours' results; empty when nothing is left to compute."""
    rows, cols = region.bounds[2], region.bounds[3]
    for other in computed:
        (r0, r1), (c0, c1) = other.bounds[2], other.bounds[3]
        if r0 <= rows[0] and rows[1] <= r1:  # spans the rows: a strip on the left or right
            if c0 <= cols[0] < c1:
                cols = (min(c1, cols[1]), cols[1])
            elif c0 < cols[1] <= c1:
                cols = (cols[0], max(c0, cols[0]))
        if c0 <= cols[0] and cols[1] <= c1:  # spans the columns: a strip on top or below
            if r0 <= rows[0] < r1:
                rows = (min(r1, rows[1]), rows[1])
            elif r0 < rows[1] <= r1:
                rows = (rows[0], max(r0, rows[0]))
    return region.along(2, *rows).along(3, *cols)


def _tiles_on(problem: Problem, graph: LayerGraph, count: int, n: int, m: int,
              devices: list[Device], reuse: bool = False, share: bool = False
              ) -> tuple[list[Part], float, list[dict]]:
    """The tiles of the first ``count`` layers, each on the device that would finish it
    soonest (list scheduling, dearest first) — or, ``share``, round robin over the devices
    in grid order (the models' rounds one after another) — when the last would finish, and
    each tile's device, FLOPs (with and without reuse), input bytes and reused strips'
    bytes. With ``reuse``, tiles in a checkerboard: (i + j) even ones run their whole stacks first;
    each odd one runs layer by layer, every layer shrunk by what its even neighbours
    computed, reading their results for the rest (one unit per layer, so that it can read
    the layers inside their stacks)."""
    layers = tuple(problem.layers(graph)[:count])
    if not layers:
        return [], 0.0, []
    shape = graph[layers[-1]].output_shape
    columns = len(grid(shape[3], m))
    regions = tiles(shape, n, m)
    cell = {region: divmod(index, columns) for index, region in enumerate(regions)}
    stack = {region: required_regions(graph, {layers[-1]: region}, layers) for region in regions}
    layers = tuple(name for name in layers if name in stack[regions[0]])  # not: one nothing reads
    odd = {r for r in regions if reuse and sum(cell[r]) % 2}
    computed = {r: stack[r] for r in regions}
    for region in odd:
        i, j = cell[region]
        around = [r for r in regions if r not in odd
                  and abs(cell[r][0] - i) + abs(cell[r][1] - j) == 1]
        computed[region] = {**stack[region], **{
            name: shrunk(stack[region][name], [stack[r][name] for r in around])
            for name in layers}}
    seconds = {r: {d.name: _tile_s(problem, graph, layers, computed[r], d) for d in devices}
               for r in regions}
    busy = {d.name: 0.0 for d in devices}
    device_of = {}
    first = list(problem.graphs).index(graph.name) * len(regions)
    for index, region in enumerate(regions if share else sorted(
            regions, key=lambda r: (r in odd, -min(seconds[r].values())))):
        device = devices[(first + index) % len(devices)].name if share else min(
            busy, key=lambda d: busy[d] + seconds[region][d])
        busy[device] += seconds[region][device]
        device_of[region] = device
    parts = [Part(graph.name, layers, r, device_of[r]) for r in regions if r not in odd]
    parts += [Part(graph.name, (name,), computed[r][name], device_of[r])  # tile by tile
              for r in regions if r in odd for name in layers if not computed[r][name].is_empty]
    summary = [{"model": graph.name, "tile": repr(r), "device": device_of[r],
                "flops": round(_flops(graph, layers, computed[r])),
                "flops_without_reuse": round(_flops(graph, layers, stack[r])),
                "input_bytes": _input_bytes(graph, layers, stack[r]),
                "reused_bytes": sum((stack[r][name].numel - computed[r][name].numel)
                                    * graph[name].itemsize for name in layers)}
               for r in regions]
    return parts, max(busy.values()), summary


def _flops(graph: LayerGraph, layers: tuple[str, ...], regions: dict[str, Region]) -> float:
    return sum(graph[name].flops * regions[name].numel / math.prod(graph[name].output_shape)
               for name in layers)


def _estimate(problem: Problem, graph: LayerGraph, count: int, scheduled, gateway: str
              ) -> float:
    """A quick latency for ranking candidates: the tiles' makespan, the slowest device's
    tile outputs to the gateway, and the rest of the model on the gateway."""
    parts, makespan, _ = scheduled
    sent: dict[str, int] = {}
    for part in parts:
        if part.device != gateway:
            sent[part.device] = sent.get(part.device, 0) + part.region.numel * graph[
                part.layers[-1]].itemsize
    gather = max((problem.cost.transfer_s(size, problem.cluster.link(device, gateway))
                  for device, size in sent.items()), default=0.0)
    rest = sum(problem.cost.compute_s(graph, graph[name], problem.cluster.device(gateway))
               for name in problem.layers(graph)[count:])
    return makespan + gather + rest


def _tail(problem: Problem, graph: LayerGraph, after: str) -> Plan | None:
    """Planner ``after``'s plan of the whole model (None: the rest goes to the gateway)."""
    if after == "gateway":
        return None
    from edgeweave.planners import PLANNERS

    if after not in PLANNERS or after == "deepthings":
        raise PlanError(f"The 'after' option of planner 'deepthings' must be 'gateway' or "
                        f"another planner's name. Got {after!r} instead.")
    function, defaults, _ = PLANNERS[after]
    single = dataclasses.replace(problem, graphs={graph.name: graph}, options=dict(defaults))
    return function(single, random.Random(0))


def _after(problem: Problem, graph: LayerGraph, count: int, tail: Plan | None, gateway: str
           ) -> list[Part]:
    """The layers past the first ``count``: whole on the gateway, or as the tail plan
    places them (its units past the cut, without their fused layers)."""
    rest = problem.layers(graph)[count:]
    if tail is None:
        return [Part(graph.name, (name,), Region.full(graph[name].output_shape), gateway)
                for name in rest]
    kept = set(rest)
    return [Part(graph.name, tuple(n for n in unit.layers if n in kept), unit.region,
                 unit.device)
            for unit in tail.units if unit.graph == graph.name and unit.last in kept]


def _plan(problem: Problem, choice: dict[str, tuple[int, int, int]],
          tails: dict[str, Plan | None], gateway: str, schedule,
          takers: tuple[str, ...] = ()) -> Plan:
    """The plan of ``choice``; with ``takers``, every tile on its model's source and
    stealable."""
    parts: list[Part] = []
    stealable: set[Part] = set()
    for graph in problem.graphs.values():
        count = choice[graph.name][0]
        tiles_of = schedule(graph, choice[graph.name])[0]
        if takers:
            home = problem.source_of(graph).name
            tiles_of = [dataclasses.replace(p, device=home) for p in tiles_of]
            stealable.update(tiles_of)
        parts += tiles_of
        if problem.options["share"] and tiles_of and problem.source_of(graph).name != gateway:
            parts += [relay(graph, name, gateway) for name in graph.inputs]  # WSH: collected
        parts += _after(problem, graph, count, tails[graph.name], gateway)
    # by first layer, stacks before single layers: a reusing tile's layers run after the
    # stacks they read inside (the default order, by last layer, would put them first);
    # stolen tiles stay as scheduled, an odd tile's layers together (one task)
    def rank(index: int) -> tuple[int, int, int]:
        part = parts[index]
        if part in stealable:
            return (0, 0, 0)
        return (1, problem.graphs[part.graph].index_of(part.layers[0]), -len(part.layers))

    ranking = sorted(range(len(parts)), key=rank)
    order = {d: [i for i in ranking if parts[i].device == d] for d in problem.cluster.names}
    made = build_plan(problem.graphs, problem.cluster, parts, order, planner="deepthings",
                      options=problem.options, models=problem.models, workload=problem.streams)
    if not stealable:
        return made
    pool = {u.id: takers for u in made.units
            if Part(u.graph, u.layers, u.region, u.device) in stealable}
    made = dataclasses.replace(made, pool=pool)
    if problem.options["fallback"]:  # the odd tiles: the tasks that read other tasks
        made = dataclasses.replace(made, fallback=tuple(
            first for first, task in tasks(made).items()
            if any(need.unit in pool for need in outside_needs(made, task))))
    validate(made)
    return made


def _candidates(problem: Problem, graph: LayerGraph) -> list[tuple[int, int, int]]:
    """(L, N, M) to try: the options given, the others over their ranges."""
    options = problem.options
    cuts = cut_points(graph, problem.layers(graph)) or [0]  # [0]: nothing to tile
    count = options["layers"]
    if count is not None and count not in cuts:
        raise PlanError(f"The 'layers' option of planner 'deepthings' must be a number of "
                        f"first layers of '{graph.name}' that hand one feature map on: "
                        f"one of {cuts}. Got {count!r} instead.")
    grids = range(1, options["max_grid"] + 1)
    if len(cuts) > MAX_CUTS:  # evenly spread, the deepest included
        cuts = [cuts[round(i * (len(cuts) - 1) / (MAX_CUTS - 1))] for i in range(MAX_CUTS)]
    found = []
    for fused in [count] if count is not None else cuts:
        if fused == 0:
            return [(0, 1, 1)]
        shape = graph[problem.layers(graph)[fused - 1]].output_shape
        for n, m in ([(options["n"], options["m"])] if None not in (options["n"], options["m"])
                     else [(k, k) for k in grids]):
            n = min(n, shape[2]) if options["n"] is None else n
            m = min(m, shape[3]) if options["m"] is None else m
            if (fused, n, m) not in found:
                found.append((fused, n, m))
    return found


def _checked(problem: Problem) -> None:
    options = problem.options
    for key in ("n", "m", "layers"):
        value = options[key]
        if value is not None and (not isinstance(value, int) or value < 1):
            raise PlanError(f"The '{key}' option of planner 'deepthings' must be a whole "
                            f"number of at least 1, or None to choose it. Got {value!r} instead.")
    if not isinstance(options["max_grid"], int) or options["max_grid"] < 1:
        raise PlanError("The 'max_grid' option of planner 'deepthings' must be a whole "
                        f"number of at least 1. Got {options['max_grid']!r} instead.")
    for key in ("reuse", "gateway_tiles", "steal", "share", "fallback"):
        if not isinstance(options[key], bool):
            raise PlanError(f"The '{key}' option of planner 'deepthings' must be True or "
                            f"False. Got {options[key]!r} instead.")
    if options["steal"] and options["share"]:
        raise PlanError("Planner 'deepthings' either shares tiles out (share=True, WSH) or "
                        "lets devices steal them (steal=True, WST), not both.")
    if options["fallback"] and not (options["steal"] and options["reuse"]):
        raise PlanError("The 'fallback' option of planner 'deepthings' lets a stolen odd "
                        "tile run unshrunk: it needs steal=True and reuse=True.")
    names = problem.cluster.names
    if options["gateway"] is not None and options["gateway"] not in names:
        raise PlanError(f"The 'gateway' option of planner 'deepthings' names no device of "
                        f"cluster '{problem.cluster.name}' ({', '.join(names)}). Got "
                        f"{options['gateway']!r} instead.")


def plan(problem: Problem, rng: random.Random) -> Plan:
    """Fused tiles over every device, the rest after the gateway or another planner; the
    grid and depth, where not given, the fastest simulated."""
    from edgeweave.simulation import predicted_s

    _checked(problem)
    devices = list(problem.cluster.devices)
    tails = {name: _tail(problem, graph, problem.options["after"])
             for name, graph in problem.graphs.items()}
    gateways = ([problem.options["gateway"]] if problem.options["gateway"] else
                list(dict.fromkeys([problem.fastest().name, *problem.sources.values()])))
    candidates = {name: _candidates(problem, graph) for name, graph in problem.graphs.items()}
    memo: dict[tuple, tuple[list[Part], float, list[dict]]] = {}
    found = []
    for gateway in gateways:
        workers = devices if problem.options["gateway_tiles"] else (
            [d for d in devices if d.name != gateway] or devices)
        takers = tuple(d.name for d in workers) if problem.options["steal"] else ()

        def schedule(graph: LayerGraph, candidate: tuple[int, int, int], workers=workers):
            key = (graph.name, candidate, tuple(d.name for d in workers))
            if key not in memo:  # the same for every gateway that computes tiles
                memo[key] = _tiles_on(problem, graph, *candidate, workers,
                                      problem.options["reuse"], problem.options["share"])
            return memo[key]

        best = {name: options[0] for name, options in candidates.items()}
        for graph in problem.graphs.values():  # one model at a time, the others as chosen
            ranked = sorted(candidates[graph.name], key=lambda c: _estimate(
                problem, graph, c[0], schedule(graph, c), gateway))
            tried = []
            for candidate in ranked[:SIMULATED]:
                made = _plan(problem, {**best, graph.name: candidate}, tails, gateway, schedule,
                             takers)
                tried.append((predicted_s(made), candidate, made))
            latency, best[graph.name], made = min(tried, key=lambda t: t[0])
        found.append((latency, gateway, best, made, schedule))
    latency, gateway, best, made, schedule = min(found, key=lambda f: f[0])
    tiles_of = {name: schedule(problem.graphs[name], c)[2] for name, c in best.items()}
    notes = {**_notes(problem, best, tiles_of, made), "gateway": gateway,
             "predicted_ms": 1e3 * latency}
    return dataclasses.replace(made, notes=notes)


def _notes(problem: Problem, choice: dict[str, tuple[int, int, int]],
           tiles_of: dict[str, list[dict]], made: Plan) -> dict:
    """Grid, depth, each tile's device, FLOPs, input and reused bytes, redundancy, footprints."""
    redundancy = {}
    for name, (count, _, _) in choice.items():
        graph = problem.graphs[name]
        own = sum(graph[layer].flops for layer in problem.layers(graph)[:count])
        computed = sum(tile["flops"] for tile in tiles_of[name])
        redundancy[name] = computed / own if own and tiles_of[name] else 1.0
    count, n, m = next(iter(choice.values()))
    return {"grid": f"{n}x{m}", "fused_layers": count,
            "choice": {name: {"layers": c, "n": n, "m": m} for name, (c, n, m) in choice.items()},
            "redundancy": redundancy,
            "tiles": [tile for name in choice for tile in tiles_of[name]],
            "summary": f"{count} layers fused in {n}x{m} tiles (redundancy "
                       f"{next(iter(redundancy.values())):.2f}x)",
            "footprint_bytes": {d: f.total_bytes for d, f in footprints(made).items()}}
