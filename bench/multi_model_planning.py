"""Seed 000's planners on a workload of several models: how long LO, PO and MO take to
plan 6 models (AlexNet, GoogLeNet, ResNet-50, twice) on 6 devices, what they predict, and
where that lies between the workload's lower bound and the single-device baselines.

Issue 13 asks for a 6-model, 6-device workload planned in under 60 s with default
settings. Each model's input arrives at its own device (round robin over the
Raspberry Pis), as in the seed's setting.

Writes the "multi-model planning" section of docs/benchmarks.md.
Run: .venv/bin/python bench/multi_model_planning.py
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time

import torch

import edgeweave as ew
from edgeweave.experiments.zoo import traced
from sections import write_section

CLUSTER = "rpi4b*3+jetson-tx2*2+edge-server@wifi"
MODELS = ("alexnet", "googlenet", "resnet50")
PLANNERS = ("local", "remote", "heft", "lo", "po", "mo")


def main() -> None:
    graphs = [dataclasses.replace(traced(name).graph, name=f"{name}-{copy}")
              for copy in (0, 1) for name in MODELS]
    pis = [f"rpi4b-{i}" for i in range(3)]
    sources = {g.name: pis[i % 3] for i, g in enumerate(graphs)}
    rows, bound = [], None
    for planner in PLANNERS:
        start = time.perf_counter()
        made = ew.plan(graphs, CLUSTER, planner=planner, sources=sources)
        seconds = time.perf_counter() - start
        predicted = 1e3 * ew.simulate(made).latency_s[0]
        bound = made.notes.get("bound_ms", bound)
        notes = made.notes
        rows.append(f"| {planner} | {seconds:.1f} s | {predicted:.1f} ms | "
                    f"{notes.get('loops', '—')} | {notes.get('evaluations', '—')} |")
        print(rows[-1], flush=True)
    lines = [f"Measured on {platform.machine()} with {os.cpu_count()} cores, torch "
             f"{torch.__version__}: {len(graphs)} models ({', '.join(MODELS)}, twice) on "
             f"`{CLUSTER}`, each model's input on its own Raspberry Pi (every planner takes "
             "the sources). Planning time is wall-clock for `ew.plan` with default options; "
             "predicted is `simulate(plan)`, one frame of every model.", "",
             "| planner | planning time | predicted completion | loops | fitness evaluations |",
             "|---|---|---|---|---|", *rows, "",
             f"The workload's lower bound (`planners.bound`): {bound:.1f} ms — compute and "
             "a link's latency, so far below what the WiFi medium allows here."]
    write_section("multi-model planning", "\n".join(lines))


if __name__ == "__main__":
    main()
