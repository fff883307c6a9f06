"""Profiling through the devices' workers: every device times every layer, on either
backend, and a worker that dies is named."""

from __future__ import annotations

import pytest
import torch

import edgeweave as ew
from edgeweave.errors import WorkerError
from edgeweave.runtime.profiling import profile_devices
from tests.conftest import zoo_graph, zoo_model
from tests.runtime import faulty


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_every_device_times_every_layer(backend, request):
    if backend == "ray":
        request.getfixturevalue("ray_instance")
    cluster = ew.Cluster.load("rpi3*2+jetson-tx2@4g")
    graph = zoo_graph("line")
    profiles = profile_devices(graph, zoo_model("line")[1], cluster, backend, repeats=1,
                               warmup=0)
    assert tuple(profiles) == tuple(cluster.names)
    for device, profile in profiles.items():
        assert profile.host.startswith(f"{device} on ")
        assert profile.fingerprint == graph.fingerprint
        assert set(profile.layer_s) == {layer.name for layer in graph}


def test_a_profiling_worker_that_dies_is_named():
    model = faulty.model(faulty.DiesInWorker)
    x = torch.randn(1, 3, 8, 8)
    graph = ew.trace(model, x, leaf_modules=[faulty.DiesInWorker], name="faulty")
    with pytest.raises(WorkerError, match="The profiling worker of device 'rpi4b' died"):
        profile_devices(graph, (x,), ew.Cluster.load("rpi4b"), repeats=1, warmup=0)
