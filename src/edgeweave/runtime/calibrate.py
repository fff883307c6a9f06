"""Calibration: a cluster whose cost model predicts what one backend really does.

Isolated per-layer timings (``cost.measure``) do not add up to a real pass (caches, the
allocator and the dispatcher behave differently), and they leave out what the backend
pays per segment and per transfer. ``calibrate`` measures, through each device's own
worker (``runtime.profiling``):

- every layer in the context of a real pass — the layers run one after another in
  topological order on the model's own values — scaled so that they add up to the
  device's measured time of the whole model as one compiled module;
- for each layer a planner may split (``planners.progressive.split_dim``), its time on
  half of its rows, from which the part of its time that does not shrink with the share
  is fitted (``ModelProfile.fixed_s``);

and then, on the backend itself, a chain of hops between two workers with a small and a
large tensor: the fixed cost of a hop beyond the compute, half charged to the sending
device's segment (``Device.segment_overhead_s``, it occupies the device) and half to the
link's latency, and the backend's cost per byte, folded into each link's bandwidth. With
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
from edgeweave.errors import EdgeweaveError
from edgeweave.graph import LayerGraph, OpKind
from edgeweave.planners.progressive import split_dim
from edgeweave.units import Region, Timeline, build_plan, whole
from edgeweave.units.compute import compute_region

HOPS = 8
SMALL_BYTES, LARGE_BYTES = 1 << 12, 1 << 22


def measure_in_context(graph: LayerGraph, inputs: tuple[torch.Tensor, ...], repeats: int = 3,
                       warmup: int = 1, threads: int | None = None) -> ModelProfile:
    """Every layer's time in a real pass on this host, scaled to the whole model's time
    as one compiled module, and the fixed part of each splittable layer's time."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        values = {**dict(zip(graph.inputs, inputs)), **graph.run_all(*inputs)}
        layers = [layer.name for layer in graph if layer.kind is not OpKind.INPUT]
        compiled = graph.compile(layers, graph.inputs, graph.outputs)
        times: dict[str, list[float]] = {name: [] for name in layers}
        whole_s, half_s = [], {name: [] for name in layers if split_dim(graph, name) is not None}
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
                for name, spent in _half_bands(graph, values, half_s).items():
                    if round_ >= warmup:
                        half_s[name].append(spent)
                if round_ >= warmup:
                    whole_s.append(elapsed)
        layer_s = {name: statistics.median(t) for name, t in times.items()}
        scale = statistics.median(whole_s) / max(sum(layer_s.values()), 1e-12)
        layer_s = {name: t * scale for name, t in layer_s.items()}
        # t(share) = fixed + share * (t - fixed), through t(1) and t(1/2)
        fixed_s = {name: max(0.0, min(layer_s[name], 2 * statistics.median(t) * scale
                                      - layer_s[name]))
                   for name, t in half_s.items() if t}
        layer_s.update({name: 0.0 for name in graph.inputs})
        return ModelProfile(graph.name, graph.fingerprint, layer_s, _host(),
                            torch.get_num_threads(), repeats, fixed_s)
    finally:
        torch.set_num_threads(previous)


def _half_bands(graph: LayerGraph, values, splittable) -> dict[str, float]:
    """Seconds to compute the first half of each splittable layer's rows (or channels)."""
    spent = {}
    for name in splittable:
        shape = graph[name].output_shape
        dim = split_dim(graph, name)
        region = Region.full(shape).along(dim, 0, max(1, shape[dim] // 2))
        available = {p: (Region.full(graph[p].output_shape), values[p])
                     for p in graph[name].inputs if graph[p].output_shape is not None}
        start = time.perf_counter()
        compute_region(graph, name, region, available)
        spent[name] = time.perf_counter() - start
    return spent


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
    small = _hop_s(cluster, backend, SMALL_BYTES, **options)
    large = _hop_s(cluster, backend, LARGE_BYTES, **options)
    if progress is not None:
        progress("hops")
    per_byte = max(1e-12, (large - small) / (LARGE_BYTES - SMALL_BYTES))
    fixed = max(0.0, small - per_byte * SMALL_BYTES)
    links = []
    for link in cluster.links:
        own_s = 8.0 / link.bandwidth_bps if emulated_links else 0.0
        latency = (link.latency_s if emulated_links else 0.0) + fixed / 2
        links.append(dataclasses.replace(link, latency_s=latency,
                                         bandwidth_bps=8.0 / (own_s + per_byte),
                                         medium=link.medium if emulated_links else None))
    calibrated = cluster_with_profiles(cluster, profiles, directory)
    devices = tuple(dataclasses.replace(d, segment_overhead_s=fixed / 2)
                    for d in calibrated.devices)
    return dataclasses.replace(calibrated, devices=devices, links=tuple(links),
                               name=f"{cluster.name} calibrated for {backend}")
