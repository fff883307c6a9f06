"""Fused stacks in bands: layer-by-layer splitting with far fewer exchanges.

Splitting every layer over the devices (EdgeFlow, ``equal-split``) makes the devices
exchange halos after every layer, and on real workers each exchange costs a message and a
wake-up (``Device.segment_overhead_s``, link latency) beyond its bytes. Fusing consecutive
layers into one stack — DeepThings' fused tile partitioning (seed 003), applied here to
the whole graph in bands rather than to its first layers in a grid — lets each device
compute its band of the stack's last layer from the receptive field it needs, with no
exchange inside the stack: halos are recomputed instead of sent. Deeper stacks mean fewer
exchanges but larger recomputed halos; this planner chooses the stacks by dynamic
programming over the cost model.

A stack is a run of consecutive layers (in the graph's topological order) in which every
layer but the last is read by a later layer of the stack (so that the last layer's band
determines what each layer computes); layers may also be read outside (skip
connections), which then receive the regions the bands computed. Each stack is cut along
the rows of its last layer (``progressive.split_dim``) into bands proportional to device
throughput, or run whole on the fastest device when its last layer cannot be split.

Cost of a stack (the DP's estimate): the slowest device's compute of its band's
receptive field, plus — when it reads from outside — one hop (the devices' segment
overhead and link latency) and the bytes of its inputs that other devices hold, assuming
they hold proportional bands. The DP minimises the sum over stacks of at most
``max_depth`` layers. It runs for the fastest one, two, … devices, each plan is simulated,
and the fastest — ``simulate(plan)`` exactly, which ``notes['predicted_ms']`` records — is
returned; with one device that is the whole model on it (the fastest, or the source), so
the planner never predicts worse than ``local`` or ``remote``.

Complexity: O(layers · max_depth²) region steps per device count.

>>> import edgeweave as ew
>>> m, x = ew.models.get("line")
>>> plan = ew.plan(ew.trace(m, x), "x86-core*2@ethernet", planner="fused")
>>> plan.planner
'fused'
"""

from __future__ import annotations

import dataclasses
import math
import random

from edgeweave.cluster import Device
from edgeweave.errors import PlanError
from edgeweave.graph import LayerGraph
from edgeweave.planners.problem import Problem
from edgeweave.planners.progressive import bands, round_shares, split_dim
from edgeweave.units import Part, Plan, Region, build_plan, covers, footprints, input_regions


def _shares(problem: Problem, graph: LayerGraph, devices: list[Device]) -> list[float]:
    speed = [1.0 / max(problem.graph_s(graph, d), 1e-12) for d in devices]
    return [s / sum(speed) for s in speed]


def _layout(graph: LayerGraph, last: str, devices: list[Device],
            shares: list[float]) -> list[tuple[str, Region]]:
    """(device, region of a stack's last layer): bands, or the whole on the first."""
    full = Region.full(graph[last].output_shape)
    dim = split_dim(graph, last)
    if dim is None or len(devices) == 1 or full.shape[dim] < len(devices):
        return [(devices[0].name, full)]
    rows = round_shares(shares, full.shape[dim])
    return bands(graph, last, dim, list(zip((d.name for d in devices), rows)))


def _stacks_ending(problem: Problem, graph: LayerGraph, layers: list[str],
                   position: dict[str, int], end: int, devices: list[Device],
                   shares: list[float], max_depth: int,
                   held: dict[str, dict[str, Region]]) -> list[tuple[int, float]]:
    """(start, estimated seconds) of every stack ``layers[start:end + 1]``, at most
    ``max_depth`` long: one backward walk from the last layer's bands gives the receptive
    field of every start at once (earlier layers never change later layers' regions);
    ``position`` is each layer's index in ``layers``."""
    layout = _layout(graph, layers[end], devices, shares)
    needed: list[dict[str, Region]] = [{layers[end]: region} for _, region in layout]
    compute = [0.0] * len(layout)
    found = []
    for k in range(end, max(-1, end - max_depth), -1):
        name = layers[k]
        successors = graph.successors(name)
        if k < end:
            if not any(position.get(s, -1) <= end for s in successors):
                break  # not read inside: no stack from here down ends at ``end``
            read_outside = name in graph.outputs or any(position[s] > end for s in successors)
            shape = graph[name].output_shape
            if read_outside and shape is not None and not covers([n[name] for n in needed],
                                                                 Region.full(shape)):
                break  # the bands would not compute all that is read elsewhere
        for band, (device, _) in enumerate(layout):
            region = needed[band][name]
            shape = graph[name].output_shape  # None: a non-tensor value, computed whole
            full = region.numel if shape is None else math.prod(shape)
            compute[band] += problem.cost.compute_s(
                graph, graph[name], problem.cluster.device(device),
                min(1.0, region.numel / max(1, full)))
            for producer, need in zip(graph[name].inputs, input_regions(graph[name], region),
                                      strict=True):
                shape = graph[producer].output_shape
                need = need.clip(shape) if shape is not None and need.ndim == len(shape) else need
                before = needed[band].get(producer)
                needed[band][producer] = need if before is None else before.hull(need)
        found.append((k, max(compute[band] + _hop_s(problem, graph, needed[band], device,
                                                    k, position, devices, shares, held)
                             for band, (device, _) in enumerate(layout))))
    return found


def _hop_s(problem: Problem, graph: LayerGraph, needed: dict[str, Region], device: str,
           start: int, position: dict[str, int], devices: list[Device], shares: list[float],
           held: dict[str, dict[str, Region]]) -> float:
    """One exchange before a stack starting at ``start``: the bytes of its inputs that
    other devices hold (as proportional bands), a segment's overhead and a latency."""
    foreign = 0
    for name, region in needed.items():
        if position.get(name, -1) >= start or region.is_empty \
                or graph[name].output_shape is None:
            continue
        if name not in held:
            held[name] = dict(_layout(graph, name, devices, shares))
        own = held[name].get(device)
        foreign += (region.numel - (own.intersect(region).numel if own else 0)) \
            * graph[name].itemsize
    if not foreign or len(devices) == 1:
        return 0.0
    link = min((problem.cluster.link(device, d.name) for d in devices if d.name != device),
               key=lambda link: link.bandwidth_bps)
    return (problem.cluster.device(device).segment_overhead_s + link.latency_s
            + problem.cost.occupancy_s(foreign, link))


def _stacks(problem: Problem, graph: LayerGraph, devices: list[Device], shares: list[float],
            max_depth: int) -> list[tuple[str, ...]]:
    """The stacks of least summed estimate (dynamic programming over stack ends)."""
    layers = problem.layers(graph)
    best = [0.0] + [math.inf] * len(layers)  # best[i]: layers[:i] done
    choice = [0] * (len(layers) + 1)
    position = {name: k for k, name in enumerate(layers)}
    held: dict[str, dict[str, Region]] = {}  # layer -> its bands, as _hop_s assumes them
    for end in range(len(layers)):
        for start, seconds in _stacks_ending(problem, graph, layers, position, end, devices,
                                             shares, max_depth, held):
            if best[start] + seconds < best[end + 1]:
                best[end + 1], choice[end + 1] = best[start] + seconds, start
    cuts, end = [], len(layers)
    while end > 0:
        cuts.append(tuple(layers[choice[end]:end]))
        end = choice[end]
    return cuts[::-1]


def _fits(problem: Problem, device: Device) -> bool:
    weights = sum(layer.param_bytes for g in problem.graphs.values() for layer in g)
    activations = max(layer.input_bytes + layer.output_bytes
                      for g in problem.graphs.values() for layer in g)
    return weights + activations <= device.memory_bytes


def _plan_on(problem: Problem, devices: list[Device], max_depth: int) -> Plan:
    parts: list[Part] = []
    for graph in problem.graphs.values():
        shares = _shares(problem, graph, devices)
        for stack in _stacks(problem, graph, devices, shares, max_depth):
            parts += [Part(graph.name, stack, region, device)
                      for device, region in _layout(graph, stack[-1], devices, shares)]
    return build_plan(problem.graphs, problem.cluster, parts, planner="fused",
                      options=problem.options, models=problem.models, workload=problem.streams)


def plan(problem: Problem, rng: random.Random) -> Plan:
    """Fused stacks in bands over the fastest 1, 2, … devices (or the whole model on the
    source device); the fastest simulated."""
    from edgeweave.simulation import predicted_s

    max_depth = problem.options["max_depth"]
    if not isinstance(max_depth, int) or max_depth < 1:
        raise PlanError(f"The 'max_depth' option of planner 'fused' must be an integer of "
                        f"at least 1. Got {max_depth!r} instead.")
    devices = sorted((d for d in problem.cluster.devices if _fits(problem, d)),
                     key=lambda d: sum(problem.graph_s(g, d) for g in problem.graphs.values()))
    if not devices:
        raise PlanError(f"No device of cluster '{problem.cluster.name}' has the memory for "
                        "the whole model's weights, which every band of this planner holds.")
    choices = [devices[:count] for count in range(1, len(devices) + 1)]
    sources = {problem.source_of(g).name for g in problem.graphs.values()}
    source = problem.cluster.device(sources.pop()) if len(sources) == 1 else None
    if source in devices and devices[0] != source:
        choices.append([source])  # no hop at all: the whole workload where inputs are
    best: tuple[float, Plan] | None = None
    for chosen in choices:
        candidate = _plan_on(problem, chosen, max_depth)
        latency = predicted_s(candidate)
        if best is None or latency < best[0] - 1e-12:
            best = (latency, candidate)
    latency, made = best
    split = sum(1 for u in made.units if len(u.layers) > 1 or u.region != Region.full(
        made.graphs[u.graph][u.last].output_shape))
    notes = {"summary": f"{len(made.units)} units ({split} fused or banded) on "
                        f"{len({u.device for u in made.units})} device(s)",
             "predicted_ms": 1e3 * latency,
             "footprint_bytes": {d: f.total_bytes for d, f in footprints(made).items()}}
    return dataclasses.replace(made, notes=notes)
