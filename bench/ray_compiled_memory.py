"""The driver's memory over repeated runs of one plan on Ray actors, in each mode, side by
side in one Ray instance: a compiled graph's channel buffers stay mapped in the driver
after teardown until Ray shuts down.

Writes the "ray-compiled-memory" section of docs/benchmarks.md.
Run: .venv/bin/python bench/ray_compiled_memory.py
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sections import write_section

import edgeweave as ew
from edgeweave.runtime.ray_cluster import import_ray, resource

CLUSTER = "rpi4b*2+edge-server@ethernet"
MODEL, PLANNER, RUNS = "resnet18", "equal-split", 4


def _rss_mib() -> float:
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def main() -> None:
    ray = import_ray()
    ray.init(address="local", include_dashboard=False, log_to_driver=False,
             logging_level="error",
             resources={resource(d): 1.0 for d in ew.Cluster.load(CLUSTER).names})
    module, x = ew.models.get(MODEL)
    made = ew.plan(ew.trace(module, x), CLUSTER, planner=PLANNER)
    rows = []
    for mode in ("plain", "messages", "compiled"):
        ew.run(made, x, backend="ray", mode=mode)  # the mode's first run: imports, warm-up
        before = _rss_mib()
        for _ in range(RUNS):
            ew.run(made, x, backend="ray", mode=mode)
        rows.append((mode, before, _rss_mib()))
        print(rows[-1], flush=True)
    ray.shutdown()
    after = _rss_mib()
    table = "\n".join([
        f"Measured by `bench/ray_compiled_memory.py` on {platform.node()} "
        f"({platform.machine()}, {torch.get_num_threads()} threads): the driver's resident "
        f"memory over {RUNS} runs of `{PLANNER}`'s plan of `{MODEL}` on `{CLUSTER}` (one "
        "frame a run), each mode after one run of its own, in one Ray instance; "
        f"{after:.0f} MiB after `ray.shutdown()`.",
        "",
        "| mode | before MiB | after MiB | per run MiB |",
        "|---|---|---|---|",
        *(f"| {mode} | {before:.0f} | {end:.0f} | {(end - before) / RUNS:.1f} |"
          for mode, before, end in rows),
    ])
    write_section("ray-compiled-memory", table)


if __name__ == "__main__":
    main()
