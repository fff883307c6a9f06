"""Running plans for real: ``run`` and its backends.

- ``inline``: every unit in this process, in a dependency order — the correctness oracle.
- ``local``: one OS process per device on this machine, tensors device to device through
  shared memory, a measured timeline, faults survived by re-planning.
- ``ray``: one Ray actor per device, on the machine that is the device (``address``), as
  a compiled graph or plain actor calls (``ray_mode``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeweave.errors import EdgeweaveError, UnknownNameError
from edgeweave.runtime.inline import Inputs, normalise_inputs, run_inline
from edgeweave.simulation import Timeline
from edgeweave.units import Plan, validate

BACKENDS = ("inline", "local", "ray")


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


def run(plan: Plan, inputs: Inputs, backend: str = "inline", frames: int = 1,
        interval_s: float = 0.0, timeout_s: float = 60.0, detect_s: float = 3.0,
        emulate_links: bool = False, emulate_compute: bool = False,
        on_frame: Callable[[int], None] | None = None, address: str | None = None,
        ray_mode: str = "compiled", ray_batch: bool = True) -> Run:
    """Execute ``plan`` on ``inputs`` (the same inputs for each of ``frames`` frames,
    arriving ``interval_s`` apart) with a backend.

    The local backend can emulate the cluster's links and its devices' predicted compute
    times. Both distributed backends survive a worker that dies (the local one also a
    worker silent for ``detect_s``) by re-planning its units onto the survivors, and stop
    when nothing progresses for ``timeout_s``. ``on_frame(frame)`` is called as frames complete.
    The ray backend joins the Ray cluster at ``address`` (default: one started here), runs
    the plan as a compiled graph or plain calls (``ray_mode``), a device's consecutive
    units in one call (``ray_batch``) or one call per unit.
    """
    if backend not in BACKENDS:
        raise UnknownNameError(f"Unknown backend '{backend}'. Available backends: "
                               f"{', '.join(BACKENDS)}.")
    if frames < 1 or interval_s < 0:
        raise EdgeweaveError(f"frames must be >= 1 and interval_s >= 0; got {frames}, "
                             f"{interval_s}.")
    validate(plan)  # a hand-made or edited plan: named, before any worker starts
    if backend == "inline":
        return Run(tuple(run_inline(plan, inputs) for _ in range(frames)), None)
    by_graph = normalise_inputs(plan, inputs)
    if backend == "ray":
        if emulate_links or emulate_compute:
            raise EdgeweaveError("Emulation is the local backend's; the ray backend runs on "
                                 "real devices and links.")
        from edgeweave.runtime.ray_backend import run_ray

        measured = run_ray(plan, [by_graph] * frames, interval_s, timeout_s, address, ray_mode,
                           ray_batch, on_frame, detect_s)
    else:
        from edgeweave.runtime.local import run_local

        measured = run_local(plan, [by_graph] * frames, interval_s, timeout_s, detect_s,
                             emulate_links, emulate_compute, on_frame)
    by_model = isinstance(inputs, Mapping)  # as inline: a dict in, a dict out
    return Run(tuple(o if by_model else next(iter(o.values())) for o in measured.outputs),
               measured.timeline, measured.faults)


__all__ = ["BACKENDS", "Run", "run", "run_inline"]
