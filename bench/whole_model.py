"""The whole model as one plan on one local worker, beside plain ``module(x)``.

What a user would run instead is ``module(x)`` on one core. Here each zoo model is planned
whole on one device (``planner="local"``: one segment, one compiled ``torch.fx`` module)
and really run on one local worker process of one torch thread, frames one after another;
plain ``module(x)`` runs in this process with one torch thread too, alternating with the
worker twice (side by side in one run, so both see the machine's swings in load). Ratio = worker's
median frame latency / plain's median time.

Writes the "whole" section of docs/benchmarks.md. Run: .venv/bin/python bench/whole_model.py
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

import torch

import edgeweave as ew
from sections import write_section

MODELS = ("yolov5s", "resnet50", "mobilenet_v2", "googlenet")
ROUNDS = 16


def plain_s(module, x, rounds: int = ROUNDS // 2) -> list[float]:
    """Times of ``rounds`` plain ``module(x)`` at one thread, after a warm-up of two."""
    torch.set_num_threads(1)
    times = []
    with torch.no_grad():
        for round_ in range(rounds + 2):
            start = time.perf_counter()
            module(x)
            if round_ >= 2:
                times.append(time.perf_counter() - start)
    return times


def main() -> None:
    lines = [f"Measured on the development VM ({platform.machine()}, {os.cpu_count()} cores), "
             f"torch {torch.__version__}; one torch thread in both columns; medians of "
             f"{ROUNDS} frames (first two of the worker's dropped as warm-up).", "",
             "| model | plain `module(x)` | one plan on one local worker | ratio |",
             "|---|---|---|---|"]
    for name in MODELS:
        module, x = ew.models.get(name)
        graph = ew.trace(module, x, name=name)
        plan = ew.plan(graph, "x86-core", planner="local")
        plain_times, worker_times = [], []
        for _ in range(2):  # alternate, so that both see the machine's swings in load
            plain_times += plain_s(module, x)
            interval = 1.5 * statistics.median(plain_times) + 0.02  # frames never queue
            run = ew.run(plan, x, backend="local", frames=ROUNDS // 2 + 2, interval_s=interval)
            worker_times += run.timeline.latency_s[2:]
        plain, worker = statistics.median(plain_times), statistics.median(worker_times)
        lines.append(f"| {name} | {plain * 1e3:.1f} ms | {worker * 1e3:.1f} ms | "
                     f"{worker / plain:.3f} |")
        print(lines[-1], file=sys.stderr)
    write_section("whole", "\n".join(lines))


if __name__ == "__main__":
    main()
