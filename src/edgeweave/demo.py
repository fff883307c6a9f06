"""The demo's second half: a plan really run on this host's cores against plain PyTorch.

The first half of ``edgeweave demo`` predicts a preset cluster. This half is what a user
would measure: this machine's cores as ``x86-core`` workers of one torch thread each,
calibrated for the local backend (``runtime.calibrate``), every planner compared on the
calibrated cluster, the plan ranked first really run, and its measured latency set beside
plain ``module(x)`` on one thread — the yardstick — with the outputs checked.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from edgeweave.cluster import Cluster
from edgeweave.graph import LayerGraph
from edgeweave.graph.call import bind
from edgeweave.planners import PLANNERS
from edgeweave.planners import plan as make_plan
from edgeweave.runtime.profiling import plain_s
from edgeweave.simulation import simulate
from edgeweave.units import Timeline

FRAMES = 6  # the first two are warm-up


@dataclass(frozen=True)
class HostRun:
    """The plan ranked first on this host's calibrated workers, predicted and measured."""

    workers: int
    planner: str
    predicted_ms: float
    measured_ms: float  # median over the frames after the warm-up
    plain_ms: float  # plain module(x), one thread, median, timed around the run
    max_abs_error: float
    ranking: tuple[tuple[str, float], ...]  # (planner, predicted ms), best first
    simulated: Timeline = field(repr=False)  # the frames as the simulator predicts them
    measured: Timeline = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """The figures, for JSON."""
        return {name: getattr(self, name) for name in (
            "workers", "planner", "predicted_ms", "measured_ms", "plain_ms", "speedup",
            "max_abs_error")} | {"ranking": [list(item) for item in self.ranking]}

    @property
    def speedup(self) -> float:
        """Plain PyTorch's time over the plan's measured latency."""
        return self.plain_ms / self.measured_ms


def max_error(module, inputs, outputs: Any) -> float:
    """Largest absolute difference between ``outputs`` and the module's own on ``inputs``
    (a tensor, a tuple of arguments or a dict of them by name), tensor by tensor in
    whatever containers the model returns."""
    with torch.no_grad():
        expected = bind(module, inputs)(module)
    pairs = zip(_tensors(outputs), _tensors(expected), strict=True)
    return max((float((a - b).abs().max()) for a, b in pairs if a.numel()), default=0.0)


def _tensors(value: Any) -> list[torch.Tensor]:
    return [leaf for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def on_this_host(module, inputs: tuple[torch.Tensor, ...], graph: LayerGraph,
                 workers: int | None = None,
                 step: Callable[[str], None] | None = None) -> HostRun:
    """Calibrate ``workers`` local workers (default: two, or one per core if fewer), rank
    every planner there, and run the first against plain PyTorch."""
    from edgeweave.runtime import run
    from edgeweave.runtime.calibrate import calibrate

    workers = workers or max(1, min(2, os.cpu_count() or 1))
    cluster = Cluster.load(f"x86-core*{workers}@ethernet" if workers > 1 else "x86-core")
    say = step or (lambda _: None)
    with tempfile.TemporaryDirectory() as directory:
        if workers > 1:
            say(f"calibrating {workers} workers on this host")
            cluster = calibrate(graph, inputs, cluster, "local", False, 1, directory)
        say("ranking the planners on this host")
        predicted = {}
        plans = {}
        for name in PLANNERS:
            plans[name] = make_plan(graph, cluster, planner=name)
            predicted[name] = simulate(plans[name]).latency_s[0]
        ranking = sorted(predicted.items(), key=lambda item: item[1])
        best = ranking[0][0]
        say(f"running {best} on {workers} local worker(s)")
        before = plain_s(module, inputs)
        interval = 2.0 * predicted[best] + 0.05  # frames do not queue
        measured = run(plans[best], inputs, backend="local", frames=FRAMES, interval_s=interval)
        after = plain_s(module, inputs)
        simulated = simulate(plans[best], FRAMES, interval)
    error = max(max_error(module, inputs, output) for output in measured.outputs)
    return HostRun(workers, best, 1e3 * predicted[best],
                   1e3 * statistics.median(measured.timeline.latency_s[2:]),
                   1e3 * statistics.median([before, after]), error,
                   tuple((name, 1e3 * seconds) for name, seconds in ranking), simulated,
                   measured.timeline)
