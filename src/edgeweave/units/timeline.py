"""Timelines: what ran where and when, predicted or measured, in one format."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edgeweave.units.workload import Workload, deadlines_met


@dataclass(frozen=True, slots=True)
class Event:
    """One compute of a unit on a device, or one transfer over a link.

    Text form: ``compute f0 u3 rpi4b 0.001000-0.003000`` or
    ``transfer f0 u3 rpi4b->edge-server 0.003000-0.004500 802816B``.
    """

    kind: str  # "compute" or "transfer"
    frame: int
    unit: str
    resource: str  # a device, or "src->dst" for a transfer
    start_s: float
    end_s: float
    n_bytes: int = 0

    def __repr__(self) -> str:
        size = f" {self.n_bytes}B" if self.kind == "transfer" else ""
        return (f"{self.kind} f{self.frame} {self.unit} {self.resource} "
                f"{self.start_s:.6f}-{self.end_s:.6f}{size}")

    @classmethod
    def parse(cls, text: str) -> Event:
        """The event written as its ``repr``."""
        match = re.fullmatch(r"(compute|transfer) f(\d+) (\S+) (\S+) ([\d.e+-]+)-([\d.e+-]+)"
                             r"(?: (\d+)B)?", text.strip())
        if match is None:
            raise ValueError(f"Not a timeline event: '{text}'.")
        kind, frame, unit, resource, start, end, size = match.groups()
        return cls(kind, int(frame), unit, resource, float(start), float(end), int(size or 0))


@dataclass(frozen=True)
class Timeline:
    """Events in order of start, arrival and completion of each model's frames, and the
    footprints. ``arrival_s`` / ``done_s`` are per round (frame f of every model: its
    first arrival, its last completion); ``model_arrival_s`` / ``model_done_s`` per model
    (``by_model`` builds a timeline from those)."""

    events: tuple[Event, ...]
    arrival_s: tuple[float, ...]
    done_s: tuple[float, ...]
    source: str  # "simulated" or what measured it
    peak_memory_bytes: Mapping[str, int] = field(default_factory=dict)
    model_arrival_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    model_done_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @classmethod
    def by_model(cls, events, arrival_s: Mapping[str, Sequence[float]],
                 done_s: Mapping[str, Sequence[float]], source: str,
                 peak_memory_bytes: Mapping[str, int] | None = None) -> Timeline:
        """The timeline of each model's frames' arrival and completion times."""
        arrival = {m: tuple(times) for m, times in arrival_s.items()}
        done = {m: tuple(done_s[m]) for m in arrival}
        return cls(tuple(events), tuple(map(min, zip(*arrival.values()))),
                   tuple(map(max, zip(*done.values()))), source, dict(peak_memory_bytes or {}),
                   arrival, done)

    def __post_init__(self) -> None:
        # whoever records events (simulator, workers, actors) hands them in any order
        ordered = tuple(sorted(self.events, key=lambda e: (e.start_s, e.kind, e.frame, e.unit)))
        object.__setattr__(self, "events", ordered)

    @property
    def latency_s(self) -> tuple[float, ...]:
        """End-to-end latency of each frame: from its arrival to its outputs being back."""
        return tuple(d - a for a, d in zip(self.arrival_s, self.done_s))

    def model_latency_s(self) -> dict[str, tuple[float, ...]]:
        """Per model, the latency of each of its frames."""
        return {m: tuple(d - a for a, d in zip(arrival, self.model_done_s[m]))
                for m, arrival in self.model_arrival_s.items()}

    def model_throughput_fps(self) -> dict[str, float]:
        """Per model, its frames per second from its first arrival to its last completion."""
        return {m: _rate(len(arrival), max(self.model_done_s[m]) - min(arrival))
                for m, arrival in self.model_arrival_s.items()}

    @property
    def makespan_s(self) -> float:
        """From the first arrival to the last completion."""
        return max(self.done_s) - min(self.arrival_s)

    @property
    def throughput_fps(self) -> float:
        """Frames per second over the makespan."""
        return _rate(len(self.done_s), self.makespan_s)

    def busy_s(self) -> dict[str, float]:
        """Seconds each device spent computing."""
        busy: dict[str, float] = {}
        for event in self.events:
            if event.kind == "compute":
                busy[event.resource] = busy.get(event.resource, 0.0) + event.end_s - event.start_s
        return busy

    def bytes_moved(self) -> dict[str, int]:
        """Bytes carried between each pair of devices (``src->dst``)."""
        moved: dict[str, int] = {}
        for event in self.events:
            if event.kind == "transfer":
                moved[event.resource] = moved.get(event.resource, 0) + event.n_bytes
        return moved

    def metrics(self, workload: Workload | None = None) -> dict[str, object]:
        """All metrics as one JSON-ready dict; per model (``models``) its frames' latency
        and its throughput — with ``workload``, also the share of frames within deadline."""
        per_model = self.model_latency_s()
        met = deadlines_met(per_model, workload or {})
        rate = self.model_throughput_fps()
        models = {m: {"latency_s": list(seconds), "mean_latency_s": _mean(seconds),
                      "throughput_fps": rate[m]} | ({"deadline_met": met[m]} if m in met else {})
                  for m, seconds in per_model.items()}
        return {"source": self.source, "latency_s": list(self.latency_s),
                "mean_latency_s": _mean(self.latency_s),
                "makespan_s": self.makespan_s, "throughput_fps": self.throughput_fps,
                "models": models, "busy_s": self.busy_s(), "bytes_moved": self.bytes_moved(),
                "peak_memory_bytes": dict(self.peak_memory_bytes)}


def _mean(values) -> float:
    return sum(values) / len(values)


def _rate(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("inf")
