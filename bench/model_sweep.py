"""The third-party model sweep: every model of ``tests/sweep/catalogue.py`` (torchvision,
timm, segmentation_models_pytorch, MONAI, efficientnet_pytorch, Hugging Face transformers,
Ultralytics; random weights, small inputs) captured, its FLOPs counted against torch's own
counter, planned by every planner and run inline against the model's output, and two split
plans (EdgeFlow's and equal-split's) run on the local backend and on Ray actors (one Ray
instance for the sweep, its workers started with the sweep's torchvision tolerance). The
model's own output after tracing is checked against its output before.

Writes the "sweep" section of docs/models.md. The suite runs a fast subset of the same
check (``tests/sweep``); ``pytest -m sweep`` runs the rest.
Run: .venv/bin/python bench/model_sweep.py [model name ...]   (libraries: the test extra)
"""

from __future__ import annotations

import contextlib
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sections import write_section
from tests.sweep.catalogue import CATALOGUE, import_tolerantly
from tests.sweep.check import CLUSTER, Result, check, workers_tolerate_torchvision

MODELS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "models.md"


def _row(result: Result) -> str:
    entry = result.entry
    if result.refusal:
        return f"| {entry.library} | `{entry.name}` | refused | | | | | | {result.refusal} |"
    outcomes = list(result.planners.values())
    ok = sum(o == "ok" for o in outcomes)
    refused = [f"{name}: {o.removeprefix('refused: ')}" for name, o in result.planners.items()
               if o.startswith("refused")]
    notes = "; ".join(result.defects + refused)
    return (f"| {entry.library} | `{entry.name}` | {result.captured_by} | {result.layers} | "
            f"{result.flops_ratio:.3f} | {ok}/{len(outcomes)} | {result.local or '-'} | "
            f"{result.ray or '-'} | {notes.replace('|', '/')} |")


def main(names: list[str]) -> None:
    entries = [e for e in CATALOGUE if not names or e.name in names]
    results = []
    for entry in entries:
        if import_tolerantly(entry.module) is None:
            print(f"{entry.id}: not installed", flush=True)
            continue
        with _ray_instance():
            result = check(entry, local=True, ray=True)
        print(f"{entry.id}: {result.seconds:.0f} s {_row(result)}", flush=True)
        results.append(result)
        if not names:  # the table after each model: a long sweep stopped early still shows
            _write(results, len(entries))


@contextlib.contextmanager
def _ray_instance():
    """A Ray instance for one model: a driver that runs many compiled graphs keeps their
    channels' buffers mapped until Ray shuts down (123 MiB a run of an equal-split
    resnet18 plan, ``bench/ray_compiled_memory.py``), which ran the whole sweep out of
    memory."""
    from edgeweave.cluster import Cluster
    from edgeweave.runtime.ray_cluster import import_ray, resource

    ray = import_ray()
    with workers_tolerate_torchvision():  # the instance's workers inherit the path
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level="error",
                 resources={resource(d): 1.0 for d in Cluster.load(CLUSTER).names})
    try:
        yield
    finally:
        ray.shutdown()


def _write(results: list[Result], total: int) -> None:
    defects = sum(bool(r.defects) for r in results)
    table = "\n".join([
        f"Measured by `bench/model_sweep.py` on {platform.node()} ({platform.machine()}, "
        f"{torch.get_num_threads()} threads), cluster `{CLUSTER}`: {len(results)} of "
        f"{total} models, {defects} with a defect. Columns: the capture method `auto` "
        "chose, the layers, "
        "edgeweave's FLOPs over torch's `FlopCounterMode`, the planners whose inline run "
        "equals the model (the rest refused with one line, listed), and EdgeFlow's and "
        "equal-split's plans on the local backend and on Ray actors (the `auto` mode: a "
        "compiled graph). Every model's own output after tracing equals its output before "
        "(a change would be listed as a defect).",
        "",
        "| library | model | capture | layers | FLOPs / torch | planners equal | local | ray | "
        "notes |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(r) for r in results),
    ])
    write_section("sweep", table, MODELS_PAGE)


if __name__ == "__main__":
    main(sys.argv[1:])
