"""What every backend shares: the options each one takes, the frames it draws
(``Frames``), what it records (``Record``) and the outputs it stitches.

A backend is a generator function ``(plan, frames, interval_s, timeout_s, options, record,
in_flight)`` that drives one ``worker.DeviceWorker`` per device over its transport and
yields each frame's outputs by model, in frame order, as frames complete; it draws frames
from ``frames`` only as they are due, and at most ``in_flight`` ahead of the last it
yielded (``None``: no bound), so that a stream of any length runs in bounded memory. Its
options are a frozen dataclass, checked by ``check`` with one clear message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from edgeweave.errors import EdgeweaveError, ExampleInputError
from edgeweave.units import Event, Plan, Region, Timeline
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
    for option in dataclasses.fields(options):
        name, value = option.name, getattr(options, option.name)
        if name == "detect_s" and not (isinstance(value, int | float) and value > 0):
            _bad(backend, name, "a positive number of seconds", value)
        if name.startswith("emulate") and not isinstance(value, bool):
            _bad(backend, name, "True or False", value)
        if name == "mode" and value not in RAY_MODES:
            _bad(backend, name, f"one of {', '.join(RAY_MODES)}", value)
        if name == "address" and value is not None and (
                not isinstance(value, str) or ":" not in value):
            _bad(backend, name, "HOST:PORT or None", value)


def _bad(backend: str, name: str, constraint: str, value: Any) -> None:
    raise EdgeweaveError(f"The '{name}' option of backend '{backend}' must be {constraint}. "
                         f"Got {value!r} instead.")


class Frames:
    """A run's frames — inputs by model, checked — drawn from an iterable only when the run
    needs them, and held until ``release``d (a frame may be sent again after a fault)."""

    def __init__(self, plan: Plan, source: Iterable[Inputs]) -> None:
        self.plan, self.source = plan, iter(source)
        self.held: dict[int, dict[str, tuple[torch.Tensor, ...]]] = {}
        self.drawn = 0  # frames drawn so far
        self.ended = False
        self.by_model: bool | None = None  # whether frames come as dicts by model

    def has(self, frame: int) -> bool:
        """Whether the stream has frame ``frame``, drawing up to it."""
        while not self.ended and self.drawn <= frame:
            try:
                value = next(self.source)
            except StopIteration:
                self.ended = True
                break
            try:
                self.held[self.drawn] = normalise_inputs(self.plan, value)
            except ExampleInputError as error:
                raise ExampleInputError(f"Frame {self.drawn}: {error}") from None
            if self.by_model is None:
                self.by_model = by_model(self.plan, value)
            self.drawn += 1
        return frame < self.drawn

    def __getitem__(self, frame: int) -> dict[str, tuple[torch.Tensor, ...]]:
        return self.held[frame]

    def release(self, below: int) -> None:
        """Forget frames before ``below``: their outputs are out."""
        for frame in [f for f in self.held if f < below]:
            del self.held[frame]


@dataclass
class Record:
    """What a run measured, frame by frame as frames complete: per model, each frame's
    arrival and completion time; the events of the first ``keep_events`` frames (of every
    frame when ``None``: a stream of any length keeps a bounded record); one line per fault
    survived. ``source`` names what measured it (``None``: nothing was, as inline)."""

    keep_events: int | None = None
    source: str | None = None
    events: list[Event] = field(default_factory=list)
    arrival_s: dict[str, list[float]] = field(default_factory=dict)
    done_s: dict[str, list[float]] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)

    def add_events(self, events: Iterable[Event]) -> None:
        """Keep ``events`` (on the run's clock) of the frames whose events are kept."""
        self.events.extend(e for e in events
                           if self.keep_events is None or e.frame < self.keep_events)

    def complete(self, arrival_s: Mapping[str, float], done_s: Mapping[str, float]) -> None:
        """The next frame is complete: per model, when it arrived and when it was done."""
        for model, at in arrival_s.items():
            self.arrival_s.setdefault(model, []).append(at)
            self.done_s.setdefault(model, []).append(done_s[model])

    def timeline(self) -> Timeline | None:
        """The timeline of the frames complete so far (an event may have been reported
        twice after a fault: once)."""
        if self.source is None or not self.arrival_s:
            return None
        return Timeline.by_model(dict.fromkeys(self.events), self.arrival_s, self.done_s,
                                 self.source)


def collect_outputs(plan: Plan, pieces: Mapping[tuple[str, str], list[Piece]]) -> dict[str, Any]:
    """Each model's outputs, stitched from the pieces of its output layers (by model and
    layer name) that the units computed."""
    results = {}
    for name, graph in plan.graphs.items():
        values = {layer: assemble(Region.full(graph[layer].output_shape), pieces[name, layer])
                  for layer in graph.outputs}
        results[name] = graph.assemble_outputs(values)
    return results


def by_model(plan: Plan, inputs: Inputs) -> bool:
    """Whether a frame's inputs come as a dict by model (for a plan of one model, a dict
    keyed by anything but the model's name is its arguments by name)."""
    return isinstance(inputs, Mapping) and (len(plan.graphs) > 1
                                            or set(inputs) <= set(plan.graphs))


def normalise_inputs(plan: Plan, inputs: Inputs) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs per model name, each a checked tuple of tensors. A dict is by model, each
    model's inputs a tensor, a tuple or a dict of its arguments by name; for a plan of one
    model, a dict whose keys are not the model's name is that model's arguments by name."""
    if by_model(plan, inputs):
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
        if not isinstance(value, torch.Tensor | list | tuple | Mapping):
            raise ExampleInputError(f"The input of model '{name}' must be a tensor, a tuple "
                                    f"of tensors or a dict of its arguments by name; got "
                                    f"{type(value).__name__}.")
        value = graph.bind_inputs(value)
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

