"""One model of the sweep checked end to end: capture, FLOPs against torch's own counter,
every planner's plan run inline (and, where asked, one on the local backend and on Ray)
against the model's own output."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

import edgeweave as ew
from edgeweave.errors import EdgeweaveError
from edgeweave.graph.call import bind
from edgeweave.planners import PLANNERS
from tests.sweep.catalogue import Entry

CLUSTER = "rpi4b*2+edge-server@ethernet"  # three devices: uneven thirds find region bugs
QUICK = {name: {"particles": 8, "loops": 10, "patience": 5} for name in ("lo", "po", "mo")}
# split layers that move tensors between processes: by a linear program, and evenly
LOCAL_PLANNERS = ("edgeflow", "equal-split")


@dataclass
class Result:
    """What one model did: each planner's outcome is "ok", "refused: …" (an
    EdgeweaveError) or "WRONG: …" / "RAISED: …" (a defect)."""

    entry: Entry
    captured_by: str = ""
    layers: int = 0
    flops_ratio: float = float("nan")  # edgeweave's count over torch's counter
    refusal: str = ""  # why capture failed: its EdgeweaveError, or "RAISED: …" (a defect)
    planners: dict[str, str] = field(default_factory=dict)
    local: str = ""
    ray: str = ""
    untouched: str = ""  # the model's own output after tracing, against before
    seconds: float = 0.0

    @property
    def defects(self) -> list[str]:
        """Everything the sweep forbids: a raw exception, a wrong output (the model's own
        after tracing included), FLOPs off by more than 10%."""
        found = [f"{name}: {outcome}" for name, outcome in self.planners.items()
                 if outcome.startswith(("WRONG", "RAISED"))]
        if self.refusal.startswith("RAISED"):
            found.append(f"capture: {self.refusal}")
        if self.untouched.startswith(("WRONG", "RAISED")):
            found.append(f"the model itself after tracing: {self.untouched}")
        for backend, outcome in (("local", self.local), ("ray", self.ray)):
            if outcome.startswith(("WRONG", "RAISED")):
                found.append(f"{backend} backend: {outcome}")
        if not self.refusal and not 0.9 <= self.flops_ratio <= 1.1:
            found.append(f"FLOPs {self.flops_ratio:.3f}x torch's counter")
        return found


def reference(module: torch.nn.Module, inputs: tuple | dict) -> tuple[list[torch.Tensor], int]:
    """The model's own output tensors and torch's FLOP count on the example (a tuple of
    arguments, or a dict of them by name)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        output = bind(module, inputs)(module)
    tensors = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor)]
    return tensors, counter.get_total_flops()


def _compare(output, expected: list[torch.Tensor]) -> str:
    tensors = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor)]
    if len(tensors) != len(expected):
        return f"WRONG: {len(tensors)} output tensors, the model gives {len(expected)}"
    for ours, theirs in zip(tensors, expected):
        scale = max(1.0, float(theirs.abs().max())) if theirs.is_floating_point() else 1.0
        try:
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * scale)
        except AssertionError as error:
            return "WRONG: " + str(error).splitlines()[-1].strip()
    return "ok"


def _outcome(action) -> str:
    try:
        return action()
    except EdgeweaveError as error:
        return f"refused: {str(error).splitlines()[0]}"
    except Exception as error:  # the sweep records every defect
        return f"RAISED: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


@contextlib.contextmanager
def workers_tolerate_torchvision() -> Iterator[None]:
    """Spawned workers (and a Ray instance started inside: its actors) start with
    ``worker_site/sitecustomize.py`` (and this repository) on their path."""
    saved = os.environ.get("PYTHONPATH")
    here = Path(__file__).resolve().parent
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(here / "worker_site"), str(here.parent.parent), *filter(None, [saved])])
    try:
        yield
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def check(entry: Entry, planners: tuple[str, ...] = tuple(sorted(PLANNERS)),
          local: bool = False, ray: bool = False) -> Result:
    """Capture ``entry``'s model, count its FLOPs and run each planner's plan inline (and
    EdgeFlow's and equal-split's plans on the local backend if ``local``, on Ray actors if
    ``ray``: a Ray that runs already, whose actors must tolerate torchvision where the
    model needs it), comparing outputs with the model's."""
    started = time.perf_counter()
    result = Result(entry)
    torch.manual_seed(0)
    module, inputs = entry.build()
    module.eval()
    expected, torch_flops = reference(module, inputs)
    try:
        graph = ew.trace(module, inputs, name=entry.name)
    except Exception as error:  # a refusal, or a defect if not an EdgeweaveError
        raw = "" if isinstance(error, EdgeweaveError) else f"RAISED: {type(error).__name__}: "
        result.refusal = raw + str(error).splitlines()[0]
        result.seconds = time.perf_counter() - started
        return result
    # trace must leave the model as it found it: its own output after tracing, as before
    result.untouched = _outcome(lambda: _compare(reference(module, inputs)[0], expected))
    result.captured_by, result.layers = graph.captured_by, len(graph)
    result.flops_ratio = graph.flops / torch_flops if torch_flops else float("nan")
    made: dict[str, ew.Plan] = {}

    def inline(name: str) -> str:
        made[name] = ew.plan(graph, CLUSTER, planner=name, seed=0, **QUICK.get(name, {}))
        return _compare(ew.run(made[name], inputs, backend="inline").output, expected)

    for name in planners:
        result.planners[name] = _outcome(lambda: inline(name))
    def on(backend: str) -> str:
        outcomes = [_outcome(lambda: _compare(
            ew.run(made[name], inputs, backend=backend).output, expected))
            for name in LOCAL_PLANNERS if name in made]
        return next((o for o in outcomes if o != "ok"), "ok" if outcomes else "")

    if local:
        with workers_tolerate_torchvision():
            result.local = on("local")
    if ray:
        result.ray = on("ray")
    result.seconds = time.perf_counter() - started
    return result
