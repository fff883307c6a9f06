"""Workloads: per model, where its frames arrive, when, and what finishing them is worth.

A plan runs frames in *rounds*: round f holds each model's f-th frame. A model's frames
arrive at its ``source`` device at its own times — every ``period_s`` from ``offset_s``,
or at the explicit ``arrivals_s`` — and its latency is counted from each frame's arrival
to its outputs being back at the source. The default stream (source the cluster's first
device, everything at time 0) is the single-model case the rest of edgeweave started from.

What a joint plan minimises (``objective_s``): the largest weighted latency of the
models' frames, plus by how much each frame misses its model's deadline. With weights 1 and
no deadlines that is the workload's completion time, seed 000's objective.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from edgeweave.errors import EdgeweaveError


@dataclass(frozen=True)
class Stream:
    """One model of a workload: its source device, its frames' arrival times, the weight
    of its latency in the objective and an optional deadline (seconds after arrival)."""

    source: str
    period_s: float = 0.0
    offset_s: float = 0.0
    arrivals_s: tuple[float, ...] = ()
    weight: float = 1.0
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "arrivals_s", tuple(float(a) for a in self.arrivals_s))
        numbers = (self.period_s, self.offset_s, *self.arrivals_s, self.weight,
                   *(() if self.deadline_s is None else (self.deadline_s,)))
        if not all(isinstance(n, (int, float)) and math.isfinite(n) for n in numbers):
            raise EdgeweaveError(f"The stream of source '{self.source}' has a value that is "
                                 "not a finite number.")
        if self.period_s < 0 or self.offset_s < 0 or any(a < 0 for a in self.arrivals_s):
            raise EdgeweaveError(f"The stream of source '{self.source}': period, offset and "
                                 "arrival times must be >= 0.")
        if list(self.arrivals_s) != sorted(self.arrivals_s):
            raise EdgeweaveError(f"The stream of source '{self.source}': arrival times must "
                                 "not decrease.")
        if self.arrivals_s and (self.period_s or self.offset_s):
            raise EdgeweaveError(f"The stream of source '{self.source}' gives both arrival "
                                 "times and a period or offset: give one.")
        if self.weight <= 0 or (self.deadline_s is not None and self.deadline_s <= 0):
            raise EdgeweaveError(f"The stream of source '{self.source}': weight and deadline "
                                 "must be > 0.")

    def arrival_s(self, frame: int, interval_s: float | None = None) -> float:
        """When frame ``frame`` arrives; ``interval_s`` (if given) replaces the period."""
        if interval_s is not None:
            return self.offset_s + frame * interval_s
        if self.arrivals_s:
            if frame >= len(self.arrivals_s):
                raise EdgeweaveError(f"The stream of source '{self.source}' gives "
                                     f"{len(self.arrivals_s)} arrival time(s); frame {frame} "
                                     "has none.")
            return self.arrivals_s[frame]
        return self.offset_s + frame * self.period_s

    def to_dict(self) -> dict[str, Any]:
        """The stream as JSON values, defaults left out."""
        default = Stream(self.source)
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()
                if key == "source" or value != getattr(default, key)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stream:
        """The stream ``to_dict`` wrote (or a user typed); unknown keys are named."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown or "source" not in data:
            raise EdgeweaveError(f"A stream has keys {sorted(known)} ('source' required); "
                                 f"got {sorted(data)}.")
        return cls(**{**data, "arrivals_s": tuple(data.get("arrivals_s", ()))})


Workload = Mapping[str, Stream]  # model name -> its stream


def arrival_times(workload: Workload, frames: int, interval_s: float | None = None
                  ) -> dict[str, tuple[float, ...]]:
    """Per model, when each of its ``frames`` frames arrives: as its stream says, or
    ``interval_s`` apart (after its offset) when that is given."""
    return {name: tuple(stream.arrival_s(f, interval_s) for f in range(frames))
            for name, stream in workload.items()}


def objective_s(latency_s: Mapping[str, float], workload: Workload) -> float:
    """The largest weighted latency over the models plus each deadline's overrun."""
    worst = max(workload[m].weight * s for m, s in latency_s.items())
    overrun = sum(max(0.0, s - workload[m].deadline_s) for m, s in latency_s.items()
                  if workload[m].deadline_s is not None)
    return worst + overrun


def deadlines_met(latency_s: Mapping[str, tuple[float, ...]], workload: Workload
                  ) -> dict[str, float]:
    """Per model with a deadline, the share of its frames done within it."""
    return {m: sum(s <= workload[m].deadline_s for s in seconds) / len(seconds)
            for m, seconds in latency_s.items()
            if m in workload and workload[m].deadline_s is not None and seconds}
