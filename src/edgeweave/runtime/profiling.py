"""Profiling on the devices themselves: every layer timed on every device, in its worker.

The ``local`` backend times one device after another, each in its own process with the
device's thread budget (so one device's timing never competes with another's); the
``ray`` backend times all devices at once, each on its own node. Each profile names the
device and the host it was measured on; ``cluster_with_profiles`` points each device of a
cluster at its profile, so the profiled cost model predicts from these measurements.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from edgeweave.cluster import Cluster
from edgeweave.cost import ModelProfile, measure, save
from edgeweave.errors import UnknownNameError, WorkerError
from edgeweave.graph import LayerGraph
from edgeweave.graph.call import bind
from edgeweave.runtime.local import worker_context

BACKENDS = ("local", "ray")


def profile_devices(graph: LayerGraph, inputs: tuple[torch.Tensor, ...], cluster: Cluster,
                    backend: str = "local", repeats: int = 5, warmup: int = 2,
                    address: str | None = None,
                    progress: Callable[[str], None] | None = None,
                    in_context: bool = False) -> dict[str, ModelProfile]:
    """Each device's profile of ``graph``, measured by that device's worker — each layer
    alone, or (``in_context``) in a real pass (``runtime.calibrate.measure_in_context``);
    ``progress(device)`` is told as each device finishes."""
    if backend not in BACKENDS:
        raise UnknownNameError(f"Unknown profiling backend '{backend}'; backends: "
                               f"{', '.join(BACKENDS)}.")
    jobs = [(device.name, device.threads or 1, in_context) for device in cluster.devices]
    profiles: dict[str, ModelProfile] = {}
    if backend == "local":
        for name, threads, context in jobs:
            with ProcessPoolExecutor(1, mp_context=worker_context()) as pool:
                try:
                    profiles[name] = pool.submit(_measure_on, name, threads, graph, inputs,
                                                 repeats, warmup, context).result()
                except BrokenProcessPool:
                    raise WorkerError(f"The profiling worker of device '{name}' died.") \
                        from None
            if progress is not None:
                progress(name)
        return profiles
    from edgeweave.runtime.ray_cluster import connect, first_line, import_ray, resource

    ray = import_ray()
    started = connect(ray, cluster.names, address)
    try:
        remote = ray.remote(num_cpus=0)(_measure_on)
        pending = {remote.options(resources={resource(name): 0.001}).remote(
            name, threads, graph, inputs, repeats, warmup, context): name
            for name, threads, context in jobs}
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(ready)
            try:
                profiles[name] = ray.get(ready)
            except ray.exceptions.RayError as error:
                raise WorkerError(f"Profiling on device '{name}' failed: "
                                  f"{first_line(error)}") from None
            if progress is not None:
                progress(name)
    finally:
        if started:
            ray.shutdown()
    return {name: profiles[name] for name, _, _ in jobs}


def _measure_on(device: str, threads: int, graph: LayerGraph, inputs: tuple[torch.Tensor, ...],
                repeats: int, warmup: int, in_context: bool) -> ModelProfile:
    if in_context:
        from edgeweave.runtime.calibrate import measure_in_context

        measured = measure_in_context(graph, inputs, repeats, warmup, threads)
    else:
        measured = measure(graph, inputs, repeats, warmup, threads)
    return dataclasses.replace(measured, host=f"{device} on {measured.host}")


def cluster_with_profiles(cluster: Cluster, profiles: dict[str, ModelProfile],
                          directory: str | Path) -> Cluster:
    """Save each device's profile as ``directory/DEVICE.json`` (merged with models already
    there) and return ``cluster`` with every profiled device reading its file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    devices = []
    for device in cluster.devices:
        if device.name in profiles:
            path = directory / f"{device.name}.json"
            save([profiles[device.name]], path)
            device = dataclasses.replace(device, profile=str(path.resolve()), profile_scale=1.0)
        devices.append(device)
    return dataclasses.replace(cluster, devices=tuple(devices))


def plain_s(module, inputs, repeats: int = 5) -> float:
    """Median seconds of plain ``module(*inputs)`` (or ``module(**inputs)`` for a dict of
    arguments by name) on one torch thread: the yardstick."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = []
        call = bind(module, inputs)  # once: only the model's own call is timed
        with torch.no_grad():
            call(module)
            for _ in range(repeats):
                start = time.perf_counter()
                call(module)
                times.append(time.perf_counter() - start)
        return statistics.median(times)
    finally:
        torch.set_num_threads(previous)
