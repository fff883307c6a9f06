"""Seed 003 against the original on the same job: YOLOv2's first 16 layers at 608x608 in
3x3 tiles on single-thread workers, each system's speed-up over its own unpartitioned pass.

edgeweave's side is measured here: FTP, FTP-WST and FTP-WST-S on E edge workers and a
gateway worker of this machine (local backend, one torch thread each, the cluster
calibrated first), beside plain ``module(x)`` on one thread timed in the same run
(``experiments.deepthings._real_runs``, as ``edgeweave reproduce deepthings`` does).
DeepThings' side is the C build's printed per-frame figures quoted in issue 12 (stock
Darknet, whose convolutions run several times slower than PyTorch's, hence ratios).

Writes the "deepthings original" section of docs/benchmarks.md.
Run: .venv/bin/python bench/deepthings_original.py [max edges]
"""

from __future__ import annotations

import os
import platform
import sys

import torch

from edgeweave.experiments import deepthings
from edgeweave.experiments.zoo import traced
from sections import write_section

# DeepThings' C build (issue 12): single-frame seconds, unpartitioned and partitioned
ORIGINAL_2_CORES = {"unpartitioned": 6.4, 2: 5.40}  # best single frame, 3x3, 2 edges
ORIGINAL_16_CORES = {1: 4.41, 6: 1.47}  # 3x3 grid, per-frame average


def main() -> None:
    edges = tuple(range(1, int(sys.argv[1]) + 1)) if len(sys.argv) > 1 else (1, 2, 3)
    model = traced(deepthings.MODEL)
    every = len(model.graph.layers) - len(model.graph.inputs)
    rows = deepthings._real_runs(model, every, edges, lambda step: print(step, flush=True))
    original = ORIGINAL_2_CORES["unpartitioned"] / ORIGINAL_2_CORES[2]
    lines = [f"Measured on {platform.machine()} with {os.cpu_count()} cores, torch "
             f"{torch.__version__}: E edge workers and one gateway worker (E + 1 processes), "
             "one torch thread each, the cluster calibrated first.", "",
             "| E | mode | measured | plain `module(x)` | speed-up | target 0.7·E | "
             "DeepThings, 2-core host |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        speedup = row.plain_ms / row.measured_ms
        theirs = f"{original:.2f}x (5.40 s against 6.4 s)" if row.edges == 2 else "—"
        lines.append(f"| {row.edges} | {row.mode} | {row.measured_ms:.0f} ms | "
                     f"{row.plain_ms:.0f} ms | {speedup:.2f}x | "
                     f"{'met' if speedup >= 0.7 * row.edges else 'missed'} "
                     f"({0.7 * row.edges:.1f}x) | {theirs} |")
    write_section("deepthings original", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
