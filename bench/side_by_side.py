"""What two cores of this machine give when both compute: the ceiling of any two-way split.

Plain ``module(x)`` at one torch thread, in bare processes (no edgeweave runtime):

- the whole input in one process alone, and in two processes at once (each its own copy):
  how much a core slows down when the other computes too (shared caches, memory
  bandwidth, the hypervisor);
- the top and bottom halves of the input rows, each alone, and both at once in two
  processes: a split with no halo, no transfer and no runtime at all.

Ceiling = whole alone / the slower half when both run at once: no plan that splits the
model over two one-thread workers of this machine can beat it. Each figure: the median
over ``REPEATS`` interleaved measurements of the median of ``ROUNDS`` passes after a
warm-up; the processes start each measurement together (a barrier).

Writes the "side by side" section of docs/benchmarks.md.
Run: .venv/bin/python bench/side_by_side.py [model ...]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import statistics
import sys
import time

import torch

import edgeweave as ew
from sections import write_section

MODELS = ("yolov5s", "resnet50", "mobilenet_v2", "googlenet")
ROUNDS = 10
REPEATS = 3


def _passes(name: str, part: str, barrier, results) -> None:
    torch.set_num_threads(1)
    module, x = ew.models.get(name)
    rows = x.shape[2] // 2
    x = {"whole": x, "top": x[:, :, :rows], "bottom": x[:, :, rows:]}[part].contiguous()
    times = []
    with torch.no_grad():
        for _ in range(2):
            module(x)
        barrier.wait()
        for _ in range(ROUNDS):
            start = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - start)
    results.put((part, statistics.median(times)))


def side_by_side(name: str, parts: tuple[str, ...]) -> dict[str, float]:
    """Median seconds of each part's pass, the parts run at once in processes of their own."""
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(len(parts)), context.Queue()
    processes = [context.Process(target=_passes, args=(name, part, barrier, results))
                 for part in parts]
    for process in processes:
        process.start()
    measured = [results.get() for _ in processes]
    for process in processes:
        process.join()
    return {part: max(t for p, t in measured if p == part) for part in parts}


def row(name: str) -> str:
    runs = {key: [] for key in ("alone", "both", "top", "bottom", "top*", "bottom*")}
    for _ in range(REPEATS):  # interleaved, so that every figure sees the machine's swings
        runs["alone"].append(side_by_side(name, ("whole",))["whole"])
        runs["both"].append(max(side_by_side(name, ("whole", "whole")).values()))
        runs["top"].append(side_by_side(name, ("top",))["top"])
        runs["bottom"].append(side_by_side(name, ("bottom",))["bottom"])
        halves = side_by_side(name, ("top", "bottom"))
        runs["top*"].append(halves["top"])
        runs["bottom*"].append(halves["bottom"])
        runs.setdefault("slower", []).append(max(halves.values()))
    median = {key: statistics.median(values) for key, values in runs.items()}
    alone, both, top, bottom = (median[k] for k in ("alone", "both", "top", "bottom"))
    halves, slower = {"top": median["top*"], "bottom": median["bottom*"]}, median["slower"]
    return (f"| {name} | {alone * 1e3:.1f} ms | {both * 1e3:.1f} ms ({both / alone:.2f}x) | "
            f"{top * 1e3:.1f} / {bottom * 1e3:.1f} ms | {halves['top'] * 1e3:.1f} / "
            f"{halves['bottom'] * 1e3:.1f} ms | {alone / slower:.2f}x |")


def main(models: list[str]) -> None:
    lines = [f"Measured on the development VM ({platform.machine()}, {os.cpu_count()} cores), "
             f"torch {torch.__version__}; plain `module(x)` at one torch thread per process, "
             f"medians of {REPEATS} interleaved measurements of {ROUNDS} passes each.", "",
             "| model | whole, alone | whole, two processes at once (slowdown) | "
             "top / bottom half, alone | top / bottom half, at once | ceiling of a "
             "two-way split |", "|---|---|---|---|---|---|"]
    for name in models:
        lines.append(row(name))
        print(lines[-1], file=sys.stderr)
    write_section("side by side", "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
