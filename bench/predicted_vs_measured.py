"""Does the simulator predict what the local backend measures, links emulated as WiFi?

For resnet18 and yolov2_16 on 2 and 4 workers (one thread each) joined by the WiFi preset
(one shared 18.88 Mbit/s medium): every layer is first profiled on every device through
its worker (``profile_devices``), so the cost model predicts this machine's compute; the
model is split into as many consecutive stages as there are workers, at cut points, with
equal predicted compute per stage; then the plan is simulated and run on the local backend
with link emulation, several frames pipelined. Real compute, emulated links.

Writes the "Predicted against measured" section of docs/benchmarks.md.
Run: .venv/bin/python bench/predicted_vs_measured.py
"""

from __future__ import annotations

import platform
import statistics
import sys
import tempfile

import edgeweave as ew
from edgeweave.cost import CostModel
from edgeweave.runtime.profiling import cluster_with_profiles, profile_devices
from edgeweave.units import build_plan, whole
from sections import write_section

MODELS = ("resnet18", "yolov2_16")
WORKERS = (2, 4)
FRAMES, INTERVAL_S = 4, 0.0


def stages(graph: ew.LayerGraph, cluster: ew.Cluster) -> ew.Plan:
    """Consecutive stages, one per device, cut at cut points at equal predicted compute."""
    cost = CostModel.for_cluster(cluster)
    device = cluster.devices[0]
    times = {layer.name: cost.compute_s(graph, layer, device) for layer in graph}
    total, cuts = sum(times.values()), set(graph.cut_points)
    parts, stage, done = [], 0, 0.0
    for layer in graph:
        done += times[layer.name]
        if layer.kind != "input":
            parts.append(whole(graph, layer.name, cluster.names[stage]))
        if (layer.name in cuts and stage < len(cluster.names) - 1
                and done >= (stage + 1) * total / len(cluster.names)):
            stage += 1
    return build_plan({graph.name: graph}, cluster, parts, planner="stages")


def main() -> None:
    rows = []
    profile_dir = tempfile.mkdtemp(prefix="edgeweave-profiles-")
    for name in MODELS:
        module, example = ew.models.get(name)
        inputs = example if isinstance(example, tuple) else (example,)
        graph = ew.trace(module, inputs, name=name)
        for n in WORKERS:
            cluster = ew.Cluster.load({"name": f"{n} workers, WiFi", "network": "wifi",
                                       "devices": [{"name": f"w{i}", "preset": "x86-core",
                                                    "threads": 1} for i in range(n)]})
            profiles = profile_devices(graph, inputs, cluster, repeats=3, warmup=1)
            cluster = cluster_with_profiles(cluster, profiles, f"{profile_dir}/{name}-{n}")
            plan = stages(graph, cluster)
            predicted = ew.simulate(plan, FRAMES, INTERVAL_S)
            measured = ew.run(plan, inputs, backend="local", frames=FRAMES,
                              interval_s=INTERVAL_S, emulate_links=True).timeline
            row = {"model": name, "workers": n, "units": len(plan.units),
                   "moved": sum(predicted.bytes_moved().values()) / FRAMES,
                   "predicted": statistics.mean(predicted.latency_s),
                   "measured": statistics.mean(measured.latency_s),
                   "predicted_fps": predicted.throughput_fps,
                   "measured_fps": measured.throughput_fps}
            rows.append(row)
            print(row, file=sys.stderr)
    lines = [f"Measured on the development VM ({platform.machine()}, 2 cores, "
             f"{platform.processor() or 'Intel Xeon'}), {FRAMES} frames sent at once, "
             "one torch thread per worker.", "",
             "| model | workers | units | MB over WiFi per frame | predicted latency | "
             "measured latency | error | predicted throughput | measured throughput |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        error = (row["measured"] - row["predicted"]) / row["predicted"]
        lines.append(f"| {row['model']} | {row['workers']} | {row['units']} | "
                     f"{row['moved'] / 1e6:.2f} | {row['predicted'] * 1e3:.0f} ms | "
                     f"{row['measured'] * 1e3:.0f} ms | {error:+.0%} | "
                     f"{row['predicted_fps']:.2f} /s | {row['measured_fps']:.2f} /s |")
    write_section("predicted", "\n".join(lines))


if __name__ == "__main__":
    main()
