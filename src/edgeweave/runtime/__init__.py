"""Running plans for real: ``run`` and its backends.

- ``inline``: every unit in this process, in a dependency order — the correctness oracle.
- ``local``: one OS process per device on this machine, tensors device to device through
  shared memory, a measured timeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeweave.errors import EdgeweaveError, UnknownNameError
from edgeweave.runtime.inline import Inputs, normalise_inputs, run_inline
from edgeweave.simulation import Timeline
from edgeweave.units import Plan

BACKENDS = ("inline", "local")


@dataclass(frozen=True)
class Run:
    """What a run gives back: each frame's outputs (what the model returns, or a dict by
    model for several), and the measured timeline (``None`` for the inline backend, which
    runs in one process and measures nothing)."""

    outputs: tuple[Any, ...]
    timeline: Timeline | None

    @property
    def output(self) -> Any:
        """The first frame's outputs."""
        return self.outputs[0]


def run(plan: Plan, inputs: Inputs, backend: str = "inline", frames: int = 1,
        interval_s: float = 0.0, timeout_s: float = 60.0, emulate_links: bool = False,
        emulate_compute: bool = False) -> Run:
    """Execute ``plan`` on ``inputs`` (the same inputs for each of ``frames`` frames,
    arriving ``interval_s`` apart) with a backend. The local backend can emulate the
    cluster's links and its devices' predicted compute times."""
    if backend not in BACKENDS:
        raise UnknownNameError(f"Unknown backend '{backend}'. Available backends: "
                               f"{', '.join(BACKENDS)}.")
    if frames < 1 or interval_s < 0:
        raise EdgeweaveError(f"frames must be >= 1 and interval_s >= 0; got {frames}, "
                             f"{interval_s}.")
    if backend == "inline":
        return Run(tuple(run_inline(plan, inputs) for _ in range(frames)), None)
    from edgeweave.runtime.local import run_local

    by_graph = normalise_inputs(plan, inputs)
    outputs, timeline = run_local(plan, [by_graph] * frames, interval_s, timeout_s,
                                  emulate_links, emulate_compute)
    by_model = isinstance(inputs, Mapping)  # as inline: a dict in, a dict out
    return Run(tuple(o if by_model else next(iter(o.values())) for o in outputs), timeline)


__all__ = ["BACKENDS", "Run", "run", "run_inline"]
