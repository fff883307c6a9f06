"""Do EdgeFlow's split plans really run faster on worker processes, as predicted?

YOLOv5s (640x640) and ResNet-50 on two local workers of one torch thread each (this
machine has 2 cores), joined by emulated gigabit Ethernet: every layer is first profiled on
every device through its worker, so the cost model predicts this machine's compute; then
each layer-by-layer planner's plan, and the whole model on one worker, is simulated and run
on the local backend (real compute, emulated links), one frame at a time.

Writes the "edgeflow-measured" section of docs/benchmarks.md.
Run: .venv/bin/python bench/edgeflow_measured.py
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile

import edgeweave as ew
from edgeweave.runtime.profiling import cluster_with_profiles, profile_devices
from sections import write_section

MODELS = ("yolov5s", "resnet50")
PLANNERS = ("local", "edgeflow", "heft", "equal-split", "proportional-split")
FRAMES = 3


def main() -> None:
    lines = [f"Measured on the development VM ({platform.machine()}, 2 cores), two workers "
             "of one torch thread each, emulated gigabit Ethernet, each layer profiled on "
             f"each worker first; frames sent one after another, mean of all but the first.", "",
             "| model | planner | units | predicted latency | measured latency | error | "
             "speed-up measured (vs local) |", "|---|---|---|---|---|---|---|"]
    profile_dir = tempfile.mkdtemp(prefix="edgeweave-profiles-")
    for name in MODELS:
        module, example = ew.models.get(name)
        inputs = example if isinstance(example, tuple) else (example,)
        graph = ew.trace(module, inputs, name=name)
        cluster = ew.Cluster.load({"name": "2 workers", "network": "ethernet",
                                   "devices": [{"name": f"w{i}", "preset": "x86-core",
                                                "threads": 1} for i in range(2)]})
        profiles = profile_devices(graph, inputs, cluster, repeats=3, warmup=1)
        cluster = cluster_with_profiles(cluster, profiles, f"{profile_dir}/{name}")
        alone = None
        for planner in PLANNERS:
            made = ew.plan(graph, cluster, planner=planner)
            predicted = ew.simulate(made).latency_s[0]
            interval = max(1.0, 4 * predicted)  # frames one after another, never queued
            run = ew.run(made, inputs, backend="local", frames=FRAMES, interval_s=interval,
                         emulate_links=True, timeout_s=120.0)
            measured = statistics.mean(run.timeline.latency_s[1:])  # the first warms up
            alone = alone or measured
            lines.append(f"| {name} | {planner} | {len(made.units)} | "
                         f"{predicted * 1e3:.0f} ms | {measured * 1e3:.0f} ms | "
                         f"{(measured - predicted) / predicted:+.0%} | "
                         f"{alone / measured:.2f}x |")
            print(lines[-1], file=sys.stderr, flush=True)
    write_section("edgeflow-measured", "\n".join(lines))


if __name__ == "__main__":
    main()
