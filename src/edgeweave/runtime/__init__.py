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
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, fields
from typing import Any

from edgeweave.errors import EdgeweaveError, UnknownNameError
from edgeweave.runtime.backend import (Frames, InlineOptions, Inputs, LocalOptions, RayOptions,
                                       Record, check, normalise_inputs)
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


class StreamRun(Iterator[Any]):
    """A plan running over a stream of frames (``run_stream``): iterating it gives each
    frame's outputs in order (what the model returns, or a dict by model when frames are
    dicts by model) as frames complete; ``faults`` and ``timeline`` say what happened so
    far. ``close()`` (or leaving a ``with`` block, or breaking out of the loop) stops the
    workers."""

    def __init__(self, outputs: Iterator[dict[str, Any]], frames: Frames,
                 record: Record) -> None:
        self._outputs, self._frames, self._record = outputs, frames, record

    def __next__(self) -> Any:
        outputs = next(self._outputs)
        return outputs if self._frames.by_model else next(iter(outputs.values()))

    @property
    def faults(self) -> tuple[str, ...]:
        """One line per fault survived so far."""
        return tuple(self._record.faults)

    @property
    def timeline(self) -> Timeline | None:
        """The measured timeline of the frames out so far (``None`` for the inline
        backend, which measures nothing): every frame's arrival and completion, the events
        of the first ``keep_events``."""
        return self._record.timeline()

    def close(self) -> None:
        """Stop the run: its workers are stopped, frames not yet out are dropped."""
        self._outputs.close()

    def __enter__(self) -> StreamRun:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


IN_FLIGHT = 8  # frames of a stream in the workers at once, by default


def run_stream(plan: Plan, frames: Iterable[Inputs], backend: str = "inline",
               interval_s: float | None = None, timeout_s: float = 60.0,
               in_flight: int | None = IN_FLIGHT, keep_events: int | None = 100,
               **options: Any) -> StreamRun:
    """Run ``plan`` over a stream of frames — any iterable or generator of inputs (a tensor,
    a tuple, or a dict by model for several models), drawn only as the run takes them —
    and iterate over each frame's outputs, in order, as they complete.

    Frames go in as the plan's workload says (``Plan.streams``) or ``interval_s`` apart, and
    at most ``in_flight`` ahead of the last output taken (``None``: no bound), so that a
    stream of any length runs in bounded memory: only the events of the first
    ``keep_events`` frames are kept for the timeline (``None``: all), beside each frame's
    arrival and completion times. The backend's ``options`` are ``run``'s. Everything is
    checked before a worker starts; a worker lost midway is survived as in ``run``.
    """
    chosen = backend_options(backend, **options)
    for name, value in (("in_flight", in_flight), ("keep_events", keep_events)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise EdgeweaveError(f"{name} must be a positive whole number of frames or None. "
                                 f"Got {value!r} instead.")
    if interval_s is not None and (not isinstance(interval_s, int | float) or interval_s < 0):
        raise EdgeweaveError(f"interval_s must be >= 0 seconds or None. Got {interval_s!r} "
                             "instead.")
    validate(plan)  # a hand-made or edited plan: named, before any worker starts
    drawn = Frames(plan, frames)
    if not drawn.has(0):
        raise EdgeweaveError("The stream has no frames.")
    arrival_times(plan.streams, 1, interval_s)
    module, function = BACKENDS[backend][0].split(":")
    execute = getattr(importlib.import_module(module), function)
    record = Record(keep_events)
    return StreamRun(execute(plan, drawn, interval_s, timeout_s, chosen, record, in_flight),
                     drawn, record)


def run(plan: Plan, inputs: Inputs | None = None, backend: str = "inline", frames: int = 1,
        interval_s: float | None = None, timeout_s: float = 60.0,
        on_frame: Callable[[int], None] | None = None, stream: Iterable[Inputs] | None = None,
        **options: Any) -> Run:
    """Execute ``plan`` on ``inputs`` (the same inputs for each of ``frames`` frames of
    each model, arriving as the plan's workload says — ``Plan.streams`` — or, given,
    ``interval_s`` apart) with a backend, stopping when nothing progresses for
    ``timeout_s``; ``on_frame(frame)`` is called as each frame's outputs come out, in
    order. ``stream`` instead of ``inputs`` gives each frame its own inputs, in order
    (``outputs[i]`` is frame ``i``'s); ``run_stream`` takes a stream of any length
    without keeping every output.

    ``options`` are the backend's (``LocalOptions``, ``RayOptions``): the local backend can
    emulate the cluster's links and its devices' compute times (``emulate_links``,
    ``emulate_compute``) and counts a worker silent for ``detect_s`` as dead; the ray
    backend joins the Ray cluster at ``address`` (default: one started here) and runs the
    plan as a compiled graph or plain calls (``mode``). Both distributed backends survive a
    worker that dies by re-planning its units onto the survivors.
    """
    if stream is not None and inputs is not None:
        raise EdgeweaveError("Give run() either inputs (with frames) or a stream of inputs, "
                             "not both.")
    if stream is None:
        if not isinstance(frames, int) or frames < 1:
            raise EdgeweaveError(f"frames must be >= 1; got {frames!r}.")
        normalise_inputs(plan, inputs)  # named as the run's inputs, not as frame 0's
        stream = [inputs] * frames
    if isinstance(stream, Sized):
        if len(stream) < 1:
            raise EdgeweaveError("frames must be >= 1; got an empty stream.")
        # a workload with too few arrival times: named before any worker starts
        arrival_times(plan.streams, len(stream), interval_s)
    with run_stream(plan, stream, backend, interval_s, timeout_s, in_flight=None,
                    keep_events=None, **options) as outputs:
        collected = []
        for frame, output in enumerate(outputs):
            collected.append(output)
            if on_frame is not None:
                on_frame(frame)
        return Run(tuple(collected), outputs.timeline, outputs.faults)


def run_inline(plan: Plan, inputs: Inputs) -> Any:
    """The outputs of ``plan`` executed in this process on ``inputs`` (the oracle)."""
    return run(plan, inputs).output


__all__ = ["BACKENDS", "InlineOptions", "LocalOptions", "RayOptions", "Run", "StreamRun",
           "backend_options", "run", "run_inline", "run_stream"]
