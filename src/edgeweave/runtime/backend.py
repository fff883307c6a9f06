"""What every backend shares: the options each one takes, what it hands back, and the
frames' inputs and outputs.

A backend is a function ``(plan, frames, interval_s, timeout_s, on_frame, options) ->
Measured`` that drives one ``worker.DeviceWorker`` per device over its transport; its
options are a frozen dataclass, checked by ``check`` with one clear message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from edgeweave.errors import EdgeweaveError, ExampleInputError
from edgeweave.units import Plan, Region, Timeline
from edgeweave.units.compute import Piece, assemble

Inputs = torch.Tensor | tuple[torch.Tensor, ...] | Mapping[str, Any]


@dataclass(frozen=True)
class InlineOptions:
    """The inline backend takes no options."""


@dataclass(frozen=True)
class LocalOptions:
    """The local backend: a worker silent for ``detect_s`` counts as dead; the cluster's
    links (``emulate_links``) and its devices' predicted compute times
    (``emulate_compute``) can be emulated."""

    detect_s: float = 3.0
    emulate_links: bool = False
    emulate_compute: bool = False


@dataclass(frozen=True)
class RayOptions:
    """The ray backend: the Ray cluster to join (``address``; default, one started here),
    the plan as a compiled graph, plain actor calls or messages between actors (``mode``;
    ``auto``: messages for a plan with stealable units, which only they can steal, else a
    compiled graph), how long an actor may stay silent before it counts as dead
    (``detect_s``), and whether the devices' predicted compute times are emulated
    (``emulate_compute``)."""

    address: str | None = None
    mode: str = "auto"
    detect_s: float = 3.0
    emulate_compute: bool = False


RAY_MODES = ("auto", "compiled", "plain", "messages")


def check(backend: str, options: Any) -> None:
    """Raise an ``EdgeweaveError`` naming the first option out of its range."""
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if field.name == "detect_s" and not (isinstance(value, int | float) and value > 0):
            _bad(backend, field.name, "a positive number of seconds", value)
        if field.name.startswith("emulate") and not isinstance(value, bool):
            _bad(backend, field.name, "True or False", value)
        if field.name == "mode" and value not in RAY_MODES:
            _bad(backend, field.name, f"one of {', '.join(RAY_MODES)}", value)
        if field.name == "address" and value is not None and (
                not isinstance(value, str) or ":" not in value):
            _bad(backend, field.name, "HOST:PORT or None", value)


def _bad(backend: str, name: str, constraint: str, value: Any) -> None:
    raise EdgeweaveError(f"The '{name}' option of backend '{backend}' must be {constraint}. "
                         f"Got {value!r} instead.")


@dataclass(frozen=True)
class Measured:
    """What a backend gives back: outputs by model per frame, the measured timeline
    (``None`` for the inline backend, which measures nothing), one line per fault survived."""

    outputs: list[dict[str, Any]]
    timeline: Timeline | None
    faults: tuple[str, ...] = ()


def collect_outputs(plan: Plan, pieces: Mapping[tuple[str, str], list[Piece]]) -> dict[str, Any]:
    """Each model's outputs, stitched from the pieces of its output layers (by model and
    layer name) that the units computed."""
    results = {}
    for name, graph in plan.graphs.items():
        values = {layer: assemble(Region.full(graph[layer].output_shape), pieces[name, layer])
                  for layer in graph.outputs}
        results[name] = graph.assemble_outputs(values)
    return results


def normalise_inputs(plan: Plan, inputs: Inputs) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs per model name, each a checked tuple of tensors."""
    if isinstance(inputs, Mapping):
        by_graph = dict(inputs)
    elif len(plan.graphs) == 1:
        by_graph = {next(iter(plan.graphs)): inputs}
    else:
        raise ExampleInputError(f"The plan runs {len(plan.graphs)} models "
                                f"({', '.join(plan.graphs)}): give a dict of inputs by model.")
    result = {}
    for name, graph in plan.graphs.items():
        if name not in by_graph:
            raise ExampleInputError(f"No input given for model '{name}'.")
        value = by_graph[name]
        if isinstance(value, torch.Tensor):
            value = (value,)
        elif isinstance(value, list | tuple):
            value = tuple(value)
        else:
            raise ExampleInputError(f"The input of model '{name}' must be a tensor or a tuple "
                                    f"of tensors; got {type(value).__name__}.")
        graph.check_inputs(value)
        result[name] = value
    return result


def keep_freed_memory() -> None:
    """Make this worker process keep the memory it frees for reuse.

    By default glibc gives large blocks back to the system when freed and maps fresh ones
    for the next frame, whose pages then fault on first touch: a worker that computes
    frame after frame, keeping a frame's results until it is complete, ran its units up
    to 2x slower than the same code in a warm process (docs/benchmarks.md). With mmap's
    threshold at its largest (32 MiB), no trimming and the heap grown in large steps,
    freed tensors are reused. Only
    glibc has ``mallopt``; elsewhere this does nothing.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_top_pad, 64 << 20)  # grow the heap in large steps, not per tensor

