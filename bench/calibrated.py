"""Calibrated predictions against real runs, and real speed-ups against plain PyTorch.

For each model, the cluster ``x86-core*N`` (N local workers of one torch thread) is
calibrated for the local backend (``edgeweave.calibrate``: layers in the context of a real
pass, the backend's cost per segment and per byte), N = 2 and 3, with the links not
emulated, with emulated gigabit Ethernet and with emulated WiFi (one shared medium). Every registered planner plans on the calibrated cluster; each
plan is simulated (one frame) and really run (frames one after another; median of all but
the first two). Plain ``module(x)`` at one thread is timed just before and just after each
plan's run (the VM's speed drifts by tens of percent over minutes). Speed-up = plain /
measured; the row marked * is the plan ``compare`` ranks first.

Writes the "calibrated" section of docs/benchmarks.md.
Run: .venv/bin/python bench/calibrated.py [model ...]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile

import torch

import edgeweave as ew
from edgeweave.planners import PLANNERS
from sections import write_section
from whole_model import plain_s

MODELS = ("yolov5s", "resnet50", "googlenet", "mobilenet_v2")
SETTINGS = {f"{n} workers, {label}": (f"x86-core*{n}@{network}", emulated)
            for n in (2, 3) for label, network, emulated in (
                ("no emulation", "ethernet", False), ("emulated Ethernet", "ethernet", True),
                ("emulated WiFi", "wifi", True))}
FRAMES = 6
PLAIN_ROUNDS = 4  # plain passes timed just before and just after each planner's run


def rows_for(name: str, label: str, expression: str, emulated: bool) -> list[str]:
    module, x = ew.models.get(name)
    graph = ew.trace(module, x, name=name)
    cluster = ew.Cluster.load(expression)
    with tempfile.TemporaryDirectory() as directory:
        calibrated = ew.calibrate(graph, (x,), cluster, "local", emulated, 3, directory)
        results = []
        for planner in PLANNERS:
            plan = ew.plan(graph, calibrated, planner=planner)
            predicted = ew.simulate(plan).latency_s[0]
            interval = 2.0 * predicted + 0.05
            before = plain_s(module, x, PLAIN_ROUNDS)
            run = ew.run(plan, x, backend="local", frames=FRAMES, interval_s=interval,
                         emulate_links=emulated, timeout_s=300.0)
            plain = statistics.median(before + plain_s(module, x, PLAIN_ROUNDS))
            measured = statistics.median(run.timeline.latency_s[2:])
            results.append((planner, len(plan.units), predicted, measured, plain))
            print(name, label, results[-1], file=sys.stderr)
    best = min(results, key=lambda r: r[2])[0]
    return [f"| {name} | {label} | {planner}{' *' if planner == best else ''} | {units} | "
            f"{predicted * 1e3:.1f} ms | {measured * 1e3:.1f} ms | "
            f"{(predicted / measured - 1) * 100:+.0f}% | {plain * 1e3:.1f} ms | "
            f"{plain / measured:.2f}x |"
            for planner, units, predicted, measured, plain in results]


def main(models: list[str]) -> None:
    lines = [f"Measured on the development VM ({platform.machine()}, {os.cpu_count()} cores), "
             f"torch {torch.__version__}; workers and plain PyTorch at one torch thread.", "",
             "| model | setting | planner | units | predicted | measured | error | plain "
             "`module(x)` | speed-up |", "|---|---|---|---|---|---|---|---|---|"]
    for name in models:
        for label, (expression, emulated) in SETTINGS.items():
            lines += rows_for(name, label, expression, emulated)
    write_section("calibrated", "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
