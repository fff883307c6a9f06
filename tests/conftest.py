"""Shared fixtures: zoo models and their traced graphs are built once per test session."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import settings

import edgeweave as ew

# property tests check properties, not speed: a loaded machine (CI, or the suite beside a
# benchmark) must not fail one on hypothesis's 200 ms deadline per example
settings.register_profile("edgeweave", deadline=None)
settings.load_profile("edgeweave")


@functools.cache
def zoo_model(name: str):
    """(module, example inputs as a tuple) for a zoo model, built once."""
    module, example = ew.models.get(name)
    return module, example if isinstance(example, tuple) else (example,)


@functools.cache
def zoo_graph(name: str) -> ew.LayerGraph:
    """The traced graph of a zoo model, traced once."""
    module, inputs = zoo_model(name)
    return ew.trace(module, inputs, name=name)


@functools.cache
def zoo_output(name: str):
    """The zoo model's own output on its example, as a tuple of tensors."""
    module, inputs = zoo_model(name)
    with torch.no_grad():
        output = module(*inputs)
    return output if isinstance(output, tuple) else (output,)


def assert_equals_model(ours, theirs) -> None:
    """A split run's output equals the model's, up to float32 rounding: a kernel computing
    a region (its own padding, a different algorithm) rounds differently, and the
    difference grows with depth and magnitude, so the absolute tolerance scales with the
    output's size."""
    scale = max(1.0, float(theirs.detach().abs().max()))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


@pytest.fixture
def graph_of():
    return zoo_graph


# every device name a test runs on the ray backend; each gets its resource on the one node
RAY_DEVICES = ("rpi4b-0", "rpi4b-1", "rpi4b-2", "edge-server", "rpi3-0", "rpi3-1",
               "jetson-tx2", "rpi4b")


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray instance for the whole test session (address="local": a stale cluster
    is never joined), offering the resource of every device in ``RAY_DEVICES``."""
    ray = pytest.importorskip("ray")
    from edgeweave.runtime.ray_cluster import remove_semaphores_left, resource, semaphores

    before = semaphores()
    ray.init(address="local", resources={resource(d): 1.0 for d in RAY_DEVICES},
             include_dashboard=False, log_to_driver=False, logging_level="error")
    yield ray
    ray.shutdown()
    remove_semaphores_left(before)
