"""Johnson's planning time on a graph of a thousand layers: the coarse-to-fine cut search
(a path of more than ``COARSE_CUTS`` cuts) beside the exhaustive one (every cut of every
path), side by side in one run, with the simulated latency of each plan.

Writes the "johnson-large" section of docs/benchmarks.md.
Run: .venv/bin/python bench/johnson_large.py   (torchvision: the test extra)
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sections import write_section
from tests.sweep.catalogue import CATALOGUE

import edgeweave as ew
from edgeweave.planners import johnson

CLUSTER = "rpi4b*2+edge-server@ethernet"
MODEL = "maxvit_t"  # 1,148 layers: its stretches run to hundreds of layers a path


def main() -> None:
    entry = next(e for e in CATALOGUE if e.name == MODEL)
    torch.manual_seed(0)
    module, inputs = entry.build()
    graph = ew.trace(module.eval(), inputs, name=MODEL)
    rows, default = [], johnson.COARSE_CUTS
    for label, cuts in (("coarse to fine (default)", johnson.COARSE_CUTS),
                        ("every cut", 10**9)):
        johnson.COARSE_CUTS = cuts  # read at each call: the module's own setting
        start = time.perf_counter()
        made = ew.plan(graph, CLUSTER, planner="johnson")
        seconds = time.perf_counter() - start
        latency = ew.simulate(made).latency_s[0]
        rows.append((label, seconds, latency, made.notes["chosen"]))
        print(label, f"{seconds:.1f} s", f"{latency * 1e3:.1f} ms", flush=True)
    johnson.COARSE_CUTS = default
    table = "\n".join([
        f"Measured by `bench/johnson_large.py` on {platform.node()} ({platform.machine()}, "
        f"{torch.get_num_threads()} threads): `{MODEL}` ({len(graph)} layers) planned by "
        f"`johnson` on `{CLUSTER}`, both searches in one run.",
        "",
        "| cut search | planning s | simulated latency ms | plan chosen |",
        "|---|---|---|---|",
        *(f"| {label} | {seconds:.1f} | {latency * 1e3:.1f} | {chosen} |"
          for label, seconds, latency, chosen in rows),
    ])
    write_section("johnson-large", table)


if __name__ == "__main__":
    main()
