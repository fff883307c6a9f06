"""Calibration: a cluster whose cost model predicts what one backend really does.

Isolated per-layer timings (``cost.measure``) do not add up to a real pass (caches, the
allocator and the dispatcher behave differently), and they leave out what the backend
pays per segment and per transfer. ``calibrate`` measures, through each device's own
worker (``runtime.profiling``):

- every layer in the context of a real pass — the layers run one after another in
  topological order on the model's own values — scaled so that they add up to the
  device's measured time of the whole model as one compiled module;

and then, on the backend itself:

- the model run with every layer it can split cut in equal bands over the devices, each
  band timed in its worker while the other devices compute theirs (on one host they share
  memory bandwidth and caches, and the backend's threads wake around them: a band timed
  alone in a quiet process is up to 40% faster), from which the part of each split
  layer's time that does not shrink with the share is fitted (``ModelProfile.fixed_s``);
- a stack of convolutions cut in two bands that swap halo rows after every layer while
  both workers compute: the fixed cost of such an exchange beyond the compute, half
  charged to the sending device's segment (``Device.segment_overhead_s``, it occupies the
  device) and half to the link's latency — a one-way chain between idle workers measures
  less than a split plan pays;
- a chain of hops between two workers with a small and a large tensor: the backend's
  cost per byte, folded into each link's bandwidth. With
``emulated_links`` the links keep their own bandwidth, latency and shared medium too (the
backend emulates them on top of its own costs); without, the links are the backend's
alone, each pair of workers its own channel.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from edgeweave.cluster import Cluster
from edgeweave.cost import ModelProfile
from edgeweave.cost.profile import _host
from edgeweave.errors import EdgeweaveError, PlanError
from edgeweave.graph import LayerGraph, OpKind
from edgeweave.planners.progressive import bands
from edgeweave.units import Part, Region, Timeline, build_plan, whole
from edgeweave.units.timing import unit_times_s

HOPS = 8
EXCHANGE_LAYERS = 8
BAND_FRAMES = 5
SMALL_BYTES, LARGE_BYTES = 1 << 12, 1 << 22


def measure_in_context(graph: LayerGraph, inputs: tuple[torch.Tensor, ...], repeats: int = 3,
                       warmup: int = 1, threads: int | None = None) -> ModelProfile:
    """Every layer's time in a real pass on this host, scaled to the whole model's time
    as one compiled module (``fixed_s`` is left to ``calibrate``, which sees bands run)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        layers = [layer.name for layer in graph if layer.kind is not OpKind.INPUT]
        compiled = graph.compile(layers, graph.inputs, graph.outputs)
        times: dict[str, list[float]] = {name: [] for name in layers}
        whole_s = []
        with torch.no_grad():
            for round_ in range(warmup + repeats):
                start = time.perf_counter()
                compiled(*inputs)
                elapsed = time.perf_counter() - start
                env = dict(zip(graph.inputs, inputs))
                for name in layers:
                    start = time.perf_counter()
                    env.update(graph.execute(env, [name]))
                    spent = time.perf_counter() - start
                    if round_ >= warmup:
                        times[name].append(spent)
                if round_ >= warmup:
                    whole_s.append(elapsed)
        layer_s = {name: statistics.median(t) for name, t in times.items()}
        scale = statistics.median(whole_s) / max(sum(layer_s.values()), 1e-12)
        layer_s = {name: t * scale for name, t in layer_s.items()}
        layer_s.update({name: 0.0 for name in graph.inputs})
        return ModelProfile(graph.name, graph.fingerprint, layer_s, _host(),
                            torch.get_num_threads(), repeats)
    finally:
        torch.set_num_threads(previous)


def fixed_in_bands(graph: LayerGraph, inputs: tuple[torch.Tensor, ...], cluster: Cluster,
                   backend: str, **options) -> dict[str, dict[str, float]]:
    """Per device, the part of each splittable layer's time that does not shrink with its
    share, fitted from a real run of the model with every layer cut in equal bands over
    the devices (``equal-split``): each band timed in its worker, beside the other devices
    computing theirs and the backend's traffic, as split plans really run — which a band
    timed alone underprices. ``t(share) = fixed + share * (t - fixed)`` is the line through
    the profile's whole-layer time ``t`` and the band's; ``fixed`` exceeds ``t`` where the
    band cost more than the whole layer alone."""
    from edgeweave.cost import CostModel
    from edgeweave.planners import plan as make_plan
    from edgeweave.runtime import run

    try:
        split = make_plan(graph, cluster, planner="equal-split")
    except PlanError:  # the bands do not fit the devices: every layer scales linearly
        return {device: {} for device in cluster.names}
    cost = CostModel.for_cluster(cluster)
    work_s = sum(unit_times_s(split, cost).values())  # all devices' compute: frames apart
    timeline = run(split, inputs, backend=backend, frames=BAND_FRAMES, interval_s=work_s,
                   timeout_s=60 + 20 * work_s, **options).timeline
    band_s: dict[tuple[str, str], tuple[float, list[float]]] = {}  # -> share, times
    for event in timeline.events:
        if event.kind == "compute" and event.frame >= 2 and ".." not in event.unit:
            unit = split.unit(event.unit)
            full = Region.full(graph[unit.last].output_shape or unit.region.shape)
            if len(unit.layers) == 1 and unit.region != full:
                share = unit.region.numel / full.numel
                band_s.setdefault((unit.device, unit.last), (share, []))[1].append(
                    event.end_s - event.start_s)
    fixed: dict[str, dict[str, float]] = {device: {} for device in cluster.names}
    for (device, layer), (share, spent) in band_s.items():
        whole_s = cost.compute_s(graph, graph[layer], cluster.device(device))
        fitted = (statistics.median(spent) - share * whole_s) / (1.0 - share)
        fixed[device][layer] = max(0.0, fitted)
    return fixed


def _hop_s(cluster: Cluster, backend: str, n_bytes: int, **options) -> float:
    """Median seconds one hop between the cluster's first two devices costs the backend
    beyond its compute, for a tensor of ``n_bytes``."""
    from edgeweave.graph import trace
    from edgeweave.runtime import run

    model = nn.Sequential(*[nn.ReLU() for _ in range(HOPS)]).eval()
    x = torch.randn(1, 1, 1, max(1, n_bytes // 4))
    graph = trace(model, x, name=f"hops-{n_bytes}")
    pair = cluster.names[:2]
    parts = [whole(graph, layer.name, pair[i % 2])
             for i, layer in enumerate(n for n in graph if n.kind is not OpKind.INPUT)]
    plan = build_plan({graph.name: graph}, cluster, parts)
    measured = run(plan, x, backend=backend, frames=8, interval_s=0.1, **options).timeline
    return hop_overhead_s(measured, HOPS)


def _exchange_s(cluster: Cluster, backend: str, **options) -> float:
    """Median seconds each round of a two-way exchange costs the backend beyond compute:
    a stack of convolutions cut in two row bands on the cluster's first two devices, which
    swap halo rows after every layer while both compute, as split and fused plans do."""
    from edgeweave.graph import trace
    from edgeweave.runtime import run

    model = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=1)
                            for _ in range(EXCHANGE_LAYERS)]).eval()
    x = torch.randn(1, 8, 64, 64)
    graph = trace(model, x, name="exchange")
    pair = cluster.names[:2]
    parts = [Part(graph.name, (layer.name,), region, device)
             for layer in graph if layer.kind is not OpKind.INPUT
             for device, region in bands(graph, layer.name, 2, [(pair[0], 32), (pair[1], 32)])]
    plan = build_plan({graph.name: graph}, cluster, parts)
    timeline = run(plan, x, backend=backend, frames=8, interval_s=0.1, **options).timeline
    layer_of = {unit.id: unit.layers[-1] for unit in plan.units}
    per_frame = []
    for frame, latency in enumerate(timeline.latency_s):
        slowest: dict[str, float] = {}  # each layer waits for its slower band
        for event in timeline.events:
            if event.kind == "compute" and event.frame == frame:
                layer = layer_of[event.unit.split("..")[-1]]
                slowest[layer] = max(slowest.get(layer, 0.0), event.end_s - event.start_s)
        # rounds: the input to the second device, an exchange per layer boundary, outputs back
        per_frame.append((latency - sum(slowest.values())) / (EXCHANGE_LAYERS + 1))
    return statistics.median(per_frame[2:])


def hop_overhead_s(timeline: Timeline, hops: int) -> float:
    """What each of a frame's ``hops`` cost beyond compute: the frame's latency less its
    compute events, over the hops; the median over frames, the first two (warm-up) left out."""
    per_frame = [(latency - sum(e.end_s - e.start_s for e in timeline.events
                                if e.kind == "compute" and e.frame == frame)) / hops
                 for frame, latency in enumerate(timeline.latency_s)]
    return statistics.median(per_frame[2:])


def calibrate(graph: LayerGraph, inputs: tuple[torch.Tensor, ...], cluster: Cluster,
              backend: str = "local", emulated_links: bool = False, repeats: int = 3,
              directory: str | Path = "calibrated", address: str | None = None,
              progress: Callable[[str], None] | None = None) -> Cluster:
    """``cluster`` calibrated for ``backend`` (see the module's docstring): each device's
    profile saved as ``directory/DEVICE.json``, its per-segment cost and the links' costs
    set, so that every planner plans with it unchanged."""
    from edgeweave.runtime.profiling import cluster_with_profiles, profile_devices

    if backend not in ("local", "ray"):
        raise EdgeweaveError(f"Calibration is for the local and ray backends; got '{backend}'.")
    if len(cluster.devices) < 2:
        raise EdgeweaveError("Calibration measures hops between two devices: the cluster "
                             f"'{cluster.name}' has one.")
    profiles = profile_devices(graph, inputs, cluster, backend, repeats, 1, address,
                               progress, in_context=True)
    options = {"address": address} if backend == "ray" else {}  # the backend's own costs
    profiled = cluster_with_profiles(cluster, profiles, directory)
    fixed = fixed_in_bands(graph, inputs, profiled, backend, **options)
    profiles = {name: dataclasses.replace(profile, fixed_s=fixed[name])
                for name, profile in profiles.items()}
    if progress is not None:
        progress("bands")
    small = _hop_s(cluster, backend, SMALL_BYTES, **options)
    large = _hop_s(cluster, backend, LARGE_BYTES, **options)
    per_byte = max(1e-12, (large - small) / (LARGE_BYTES - SMALL_BYTES))
    hop_fixed = max(0.0, _exchange_s(cluster, backend, **options))
    if progress is not None:
        progress("hops")
    links = []
    for link in cluster.links:
        own_s = 8.0 / link.bandwidth_bps if emulated_links else 0.0
        latency = (link.latency_s if emulated_links else 0.0) + hop_fixed / 2
        links.append(dataclasses.replace(link, latency_s=latency,
                                         bandwidth_bps=8.0 / (own_s + per_byte),
                                         medium=link.medium if emulated_links else None))
    calibrated = cluster_with_profiles(cluster, profiles, directory)
    devices = tuple(dataclasses.replace(d, segment_overhead_s=hop_fixed / 2)
                    for d in calibrated.devices)
    return dataclasses.replace(calibrated, devices=devices, links=tuple(links),
                               name=f"{cluster.name} calibrated for {backend}")
