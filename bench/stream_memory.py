"""Memory of a long stream: ``run_stream`` against ``run`` over the same distinct frames.

A small model spread over three local workers takes a generator of distinct frames; every
output is checked against the model on its own frame as it comes out. The driver's
resident memory (``VmRSS``) and the workers' together are sampled every ``STEP`` frames;
the growth per frame after a warm-up is the slope between the first and last sample.
``run`` keeps every output and every event; ``run_stream`` keeps the events of its first
100 frames and each frame's arrival and completion times.

Writes the "stream memory" section of docs/benchmarks.md.
Run: .venv/bin/python bench/stream_memory.py [FRAMES]   (default 4000)
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

import edgeweave as ew
from edgeweave.graph import OpKind
from edgeweave.units import build_plan, whole
from sections import write_section

CLUSTER = "rpi4b*2+edge-server@wifi"
MODEL = "two_branch"
STEP = 500  # frames between samples; the first sample is after one step (warm)


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process, MiB, from /proc (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def workers_mib() -> float:
    return sum(rss_mib(p.pid) for p in multiprocessing.active_children())


def spread_plan() -> tuple[ew.Plan, torch.nn.Module, torch.Tensor]:
    module, example = ew.models.get(MODEL)
    graph, cluster = ew.trace(module, example, name=MODEL), ew.Cluster.load(CLUSTER)
    layers = [layer for layer in graph if layer.kind is not OpKind.INPUT]
    parts = [whole(graph, layer.name, cluster.names[i * 3 // len(layers)])
             for i, layer in enumerate(layers)]
    return build_plan({MODEL: graph}, cluster, parts), module, example


def camera(example: torch.Tensor, count: int) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    for _ in range(count):
        yield torch.randn(example.shape, generator=generator)


def measure(how: str, count: int) -> dict[str, float]:
    """Stream ``count`` frames with ``how`` ("run_stream" or "run"), checking each output;
    memory samples and the wall time."""
    plan, module, example = spread_plan()
    expected = camera(example, count)
    samples: list[tuple[int, float, float]] = []
    wrong = 0

    def check(frame: int, output: torch.Tensor) -> None:
        nonlocal wrong
        with torch.no_grad():
            wrong += not torch.allclose(output, module(next(expected)), rtol=1e-4, atol=1e-5)
        if (frame + 1) % STEP == 0:
            samples.append((frame + 1, rss_mib(), workers_mib()))

    start = time.perf_counter()
    if how == "run_stream":
        with ew.run_stream(plan, camera(example, count), backend="local") as outputs:
            for frame, output in enumerate(outputs):
                check(frame, output)
        out = count
    else:
        def sample(frame: int) -> None:  # the run holds the outputs: checked after
            if (frame + 1) % STEP == 0:
                samples.append((frame + 1, rss_mib(), workers_mib()))

        result = ew.run(plan, stream=camera(example, count), backend="local", on_frame=sample)
        for output in result.outputs:
            with torch.no_grad():
                wrong += not torch.allclose(output, module(next(expected)), rtol=1e-4,
                                            atol=1e-5)
        out = len(result.outputs)
    seconds = time.perf_counter() - start
    (first, driver0, workers0), (last, driver1, workers1) = samples[0], samples[-1]
    return {"frames": out, "wrong": wrong, "seconds": seconds,
            "driver_first": driver0, "driver_last": driver1,
            "driver_kib_per_frame": 1024 * (driver1 - driver0) / (last - first),
            "workers_first": workers0, "workers_last": workers1,
            "workers_kib_per_frame": 1024 * (workers1 - workers0) / (last - first)}


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    rows = {how: measure(how, count) for how in ("run_stream", "run")}
    lines = [f"Measured on {platform.machine()} with {os.cpu_count()} cores, torch "
             f"{torch.__version__}: `{MODEL}` over `{CLUSTER}` (three local workers, whole "
             f"layers in thirds), {count} distinct frames from a generator, every output "
             f"checked; resident memory sampled every {STEP} frames, growth from frame "
             f"{STEP} to {count}.", "",
             "| API | frames out | wrong | driver MiB at 500 / end | driver growth per frame "
             "| workers MiB at 500 / end | workers growth per frame | wall time |",
             "|---|---|---|---|---|---|---|---|"]
    for how, row in rows.items():
        lines.append(f"| `{how}` | {row['frames']} | {row['wrong']} | "
                     f"{row['driver_first']:.0f} / {row['driver_last']:.0f} | "
                     f"{row['driver_kib_per_frame']:.2f} KiB | "
                     f"{row['workers_first']:.0f} / {row['workers_last']:.0f} | "
                     f"{row['workers_kib_per_frame']:.2f} KiB | {row['seconds']:.0f} s |")
    write_section("stream memory", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
