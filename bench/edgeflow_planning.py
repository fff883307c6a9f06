"""How long EdgeFlow takes to plan, against its baselines, as the cluster grows.

Plans YOLOv5s (and Inception-ResNet-v2, the largest zoo graph) on clusters of 2 to 8
mixed devices over Ethernet with ``edgeflow`` and the layer-by-layer baselines: the median
of 5 plannings after one warm-up (torch.fx tracing excluded), on this machine.

Writes the "edgeflow" section of docs/benchmarks.md. Run: .venv/bin/python bench/edgeflow_planning.py
"""

from __future__ import annotations

import platform
import statistics
import time

import edgeweave as ew
from sections import write_section

CLUSTERS = ("rpi4b+jetson-nano", "rpi4b*2+jetson-nano*2", "rpi4b*3+jetson-nano*2+jetson-tx2",
            "rpi3*4+rpi4b*2+jetson-nano*2")
PLANNERS = ("edgeflow", "heft", "equal-split", "proportional-split")


def _median_s(graph, cluster: str, planner: str) -> float:
    ew.plan(graph, cluster, planner=planner)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        ew.plan(graph, cluster, planner=planner)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    lines = [f"Measured on the development VM ({platform.machine()}, 2 cores); median of 5, "
             "ms, Ethernet.", "",
             "| model | devices | " + " | ".join(PLANNERS) + " |",
             "|---|---|" + "---|" * len(PLANNERS)]
    for model in ("yolov5s", "inception_resnet_v2"):
        module, example = ew.models.get(model)
        graph = ew.trace(module, example, name=model)
        for devices in CLUSTERS:
            cluster = f"{devices}@ethernet"
            count = len(ew.Cluster.load(cluster).devices)
            cells = [f"{1e3 * _median_s(graph, cluster, p):.0f}" for p in PLANNERS]
            lines.append(f"| {model} | {count} (`{devices}`) | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    write_section("edgeflow", "\n".join(lines))


if __name__ == "__main__":
    main()
