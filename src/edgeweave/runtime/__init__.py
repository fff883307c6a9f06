"""Running plans for real: ``run`` and its backends, all driving one worker core.

- ``inline``: every device's worker in this process — the correctness oracle.
- ``local``: one OS process per device on this machine, one channel per pair of
  processes, a measured timeline, faults survived by re-planning.
- ``ray``: one Ray actor per device, on the machine that is the device (``address``), as
  a compiled graph or plain actor calls (``mode``).

Every backend runs a device's *segments* (``units.segments``) through
``worker.DeviceWorker``; a backend only carries its parcels and reports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from edgeweave.errors import EdgeweaveError, UnknownNameError
from edgeweave.runtime.backend import (InlineOptions, Inputs, LocalOptions, Measured,
                                       RayOptions, check, normalise_inputs)
from edgeweave.units import Plan, Timeline, arrival_times, validate

# name -> (module and function of the backend, its options)
BACKENDS: dict[str, tuple[str, type]] = {
    "inline": ("edgeweave.runtime.inline:execute", InlineOptions),
    "local": ("edgeweave.runtime.local:execute", LocalOptions),
    "ray": ("edgeweave.runtime.ray_backend:execute", RayOptions),
}


@dataclass(frozen=True)
class Run:
    """What a run gives back: each frame's outputs (what the model returns, or a dict by
    model for several), and the measured timeline (``None`` for the inline backend, which
    runs in one process and measures nothing), and one line per fault the run survived."""

    outputs: tuple[Any, ...]
    timeline: Timeline | None
    faults: tuple[str, ...] = ()

    @property
    def output(self) -> Any:
        """The first frame's outputs."""
        return self.outputs[0]


def backend_options(backend: str, **options: Any) -> Any:
    """The options dataclass of ``backend`` from keyword options, checked."""
    if backend not in BACKENDS:
        raise UnknownNameError(f"Unknown backend '{backend}'. Available backends: "
                               f"{', '.join(BACKENDS)}.")
    kind = BACKENDS[backend][1]
    known = {field.name for field in fields(kind)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise EdgeweaveError(f"Backend '{backend}' has no option '{unknown[0]}'; its options: "
                             f"{', '.join(sorted(known)) or 'none'}.")
    made = kind(**options)
    check(backend, made)
    return made


def run(plan: Plan, inputs: Inputs | None = None, backend: str = "inline", frames: int = 1,
        interval_s: float | None = None, timeout_s: float = 60.0,
        on_frame: Callable[[int], None] | None = None, stream: Iterable[Inputs] | None = None,
        **options: Any) -> Run:
    """Execute ``plan`` on ``inputs`` (the same inputs for each of ``frames`` frames of
    each model, arriving as the plan's workload says — ``Plan.streams`` — or, given,
    ``interval_s`` apart) with a backend, stopping when nothing progresses for
    ``timeout_s``; ``on_frame(frame)`` is called as frames complete. ``stream`` instead of
    ``inputs`` gives each frame its own inputs, in order (``outputs[i]`` is frame ``i``'s).

    ``options`` are the backend's (``LocalOptions``, ``RayOptions``): the local backend can
    emulate the cluster's links and its devices' compute times (``emulate_links``,
    ``emulate_compute``) and counts a worker silent for ``detect_s`` as dead; the ray
    backend joins the Ray cluster at ``address`` (default: one started here) and runs the
    plan as a compiled graph or plain calls (``mode``). Both distributed backends survive a
    worker that dies by re-planning its units onto the survivors.
    """
    chosen = backend_options(backend, **options)
    if stream is not None and inputs is not None:
        raise EdgeweaveError("Give run() either inputs (with frames) or a stream of inputs, "
                             "not both.")
    if stream is not None:
        frames = len(stream := list(stream))
    if frames < 1 or (interval_s is not None and interval_s < 0):
        raise EdgeweaveError(f"frames must be >= 1 and interval_s >= 0; got {frames}, "
                             f"{interval_s}.")
    validate(plan)  # a hand-made or edited plan: named, before any worker starts
    arrival_times(plan.streams, frames, interval_s)  # a stream with too few arrival times: named here
    by_frame = ([normalise_inputs(plan, frame) for frame in stream] if stream is not None
                else [normalise_inputs(plan, inputs)] * frames)
    module, function = BACKENDS[backend][0].split(":")
    execute = getattr(importlib.import_module(module), function)
    measured: Measured = execute(plan, by_frame, interval_s, timeout_s, on_frame, chosen)
    first = stream[0] if stream is not None else inputs
    by_model = isinstance(first, Mapping)  # a dict in, a dict out
    return Run(tuple(o if by_model else next(iter(o.values())) for o in measured.outputs),
               measured.timeline, measured.faults)


def run_inline(plan: Plan, inputs: Inputs) -> Any:
    """The outputs of ``plan`` executed in this process on ``inputs`` (the oracle)."""
    return run(plan, inputs).output


__all__ = ["BACKENDS", "InlineOptions", "LocalOptions", "Measured", "RayOptions", "Run",
           "backend_options", "run", "run_inline"]
