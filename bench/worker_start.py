"""What a local run costs to start: workers forked by the fork server against spawned ones.

The same one-frame run of a small model over three local workers, timed end to end
(``ew.run`` from call to return: workers started, warmed, one frame, stopped), RUNS times
each way, side by side in one process. "spawn" swaps the backend's process context for
multiprocessing's spawn — what the local backend used before — in this script only; the
first fork-server run, which starts the server, is listed on its own. Plain ``module(x)``
on one thread, timed in the same run, is the yardstick.

Writes the "worker start" section of docs/benchmarks.md.
Run: .venv/bin/python bench/worker_start.py [RUNS]   (default 5)
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

import torch
import torch.multiprocessing as mp

import edgeweave as ew
from edgeweave.runtime import local
from sections import write_section

CLUSTER = "rpi4b*2+edge-server@wifi"
MODEL = "two_branch"


def timed_runs(plan: ew.Plan, example: torch.Tensor, runs: int) -> list[float]:
    """Seconds of each of ``runs`` one-frame local runs of ``plan``."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        ew.run(plan, example, backend="local")
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    module, example = ew.models.get(MODEL)
    plan = ew.plan(ew.trace(module, example, name=MODEL), CLUSTER, planner="equal-split")
    torch.set_num_threads(1)  # as each worker
    with torch.no_grad():
        plain = []
        for _ in range(runs):
            start = time.perf_counter()
            module(example)
            plain.append(time.perf_counter() - start)
    forked = timed_runs(plan, example, runs + 1)  # the first starts the fork server
    fork_server = local.worker_context
    local.worker_context = lambda: mp.get_context("spawn")
    try:
        spawned = timed_runs(plan, example, runs)
    finally:
        local.worker_context = fork_server
    forked_ms = 1000 * statistics.median(forked[1:])
    spawned_ms = 1000 * statistics.median(spawned)
    plain_ms = 1000 * statistics.median(plain)
    lines = [f"Measured on {platform.machine()} with {os.cpu_count()} cores, torch "
             f"{torch.__version__}: a one-frame `ew.run` of `{MODEL}` over `{CLUSTER}` "
             f"(three local workers, `equal-split`), call to return, median of {runs}.", "",
             "| how | median | runs |", "|---|---|---|",
             f"| spawned | {spawned_ms:.0f} ms | "
             f"{', '.join(f'{1000 * s:.0f}' for s in spawned)} |",
             f"| forked by the fork server | {forked_ms:.0f} ms | "
             f"{', '.join(f'{1000 * s:.0f}' for s in forked[1:])} (first, starting the "
             f"server: {1000 * forked[0]:.0f}) |",
             f"| plain `module(x)`, one thread | {plain_ms:.2f} ms | "
             f"{', '.join(f'{1000 * s:.2f}' for s in plain)} |", "",
             f"A run starts **{spawned_ms / forked_ms:.1f}x** faster with forked workers."]
    write_section("worker start", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
