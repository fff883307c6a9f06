"""What does one hop cost each backend, beside a raw transfer of the same bytes?

A chain of 16 ReLUs, each a unit, alternating between two devices, so every unit is its
own segment and one hop to the other worker; one frame at a time (frames 0.3 s apart, so
they never overlap). Per-hop overhead = (frame latency - the frame's compute events) / 16,
median over frames. Beside it: the one-way time of the same tensor through a pipe between two
processes as raw bytes through a pipe, and through a loopback TCP socket (half a
ping-pong round trip).

Then whole plans: resnet18 cut into four consecutive quarters on four workers, latency of
one frame at a time and throughput of frames sent at once, for the local backend and for
each Ray mode.

Writes the "overhead" and "modes" sections of docs/benchmarks.md (between their markers).
Run: .venv/bin/python bench/runtime_overhead.py
"""

from __future__ import annotations

import os
import platform
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch import nn

import edgeweave as ew
from edgeweave.runtime.calibrate import hop_overhead_s
from edgeweave.runtime.ray_cluster import resource
from edgeweave.units import build_plan, whole
from edgeweave.units.segments import segments
from sections import write_section

HOPS, FRAMES, ROUNDS = 16, 12, 30
SIZES = {"4 KiB": 1 << 12, "256 KiB": 1 << 18, "4 MiB": 1 << 22}
CLUSTER, QUARTERS_CLUSTER = "x86-core*2@ethernet", "x86-core*4@ethernet"


def chain_plan(n_bytes: int):
    model = nn.Sequential(*[nn.ReLU() for _ in range(HOPS)]).eval()
    x = torch.randn(1, 16, 1, n_bytes // 64)
    graph = ew.trace(model, x, name="chain")
    cluster = ew.Cluster.load(CLUSTER)
    parts = [whole(graph, layer.name, cluster.names[i % 2])
             for i, layer in enumerate(n for n in graph if n.kind != "input")]
    return build_plan({"chain": graph}, cluster, parts), graph, x


def _echo(inbox, outbox) -> None:
    while (data := inbox.recv_bytes()) != b"stop":
        outbox.send_bytes(data)


def pipe_one_way_s(n_bytes: int) -> float:
    context = mp.get_context("spawn")
    (there, to_echo), (from_echo, back) = context.Pipe(False), context.Pipe(False)
    echo = context.Process(target=_echo, args=(there, back), daemon=True)
    echo.start()
    payload = memoryview(torch.randn(n_bytes // 4).numpy()).cast("B")
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        to_echo.send_bytes(payload)
        from_echo.recv_bytes()
        times.append((time.perf_counter() - start) / 2)
    to_echo.send_bytes(b"stop")
    echo.join()
    return statistics.median(times)


def tcp_one_way_s(n_bytes: int) -> float:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            for _ in range(ROUNDS):
                received = 0
                while received < n_bytes:
                    received += len(connection.recv(1 << 20))
                connection.sendall(b"k")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    payload = torch.randn(n_bytes // 4).numpy().tobytes()
    times = []
    with socket.create_connection(("127.0.0.1", port)) as client:
        for _ in range(ROUNDS):
            start = time.perf_counter()
            client.sendall(payload)
            client.recv(1)
            times.append(time.perf_counter() - start)  # the 1-byte ack is the other half
    thread.join()
    server.close()
    return statistics.median(times)


def backend_unit_s(plan, x, **options) -> float:
    """A hop's cost beyond compute: each frame's latency less its compute events, over the
    hops, median of all but the first two frames."""
    return hop_overhead_s(ew.run(plan, x, frames=FRAMES, interval_s=0.3, **options).timeline,
                          HOPS)


def quarters_plan():
    module, example = ew.models.get("resnet18")
    graph = ew.trace(module, example, name="resnet18")
    cluster = ew.Cluster.load(QUARTERS_CLUSTER)
    layers = [layer for layer in graph if layer.kind != "input"]
    parts = [whole(graph, layer.name, cluster.names[4 * i // len(layers)])
             for i, layer in enumerate(layers)]
    return build_plan({"resnet18": graph}, cluster, parts), example


def modes() -> str:
    plan, x = quarters_plan()
    variants = {"local": {"backend": "local"}, "ray plain": {"backend": "ray", "mode": "plain"},
                "ray compiled": {"backend": "ray", "mode": "compiled"}}
    lines = ["| backend | segments per frame | latency, one frame at a time | throughput, "
             "8 frames at once |", "|---|---|---|---|"]
    count = len(segments(plan))
    for label, options in variants.items():
        spaced = ew.run(plan, x, frames=6, interval_s=0.5, **options).timeline
        burst = ew.run(plan, x, frames=8, **options).timeline
        lines.append(f"| {label} | {count} | {statistics.median(spaced.latency_s[1:]) * 1e3:.1f}"
                     f" ms | {burst.throughput_fps:.1f} /s |")
        print(lines[-1], file=sys.stderr)
    return "\n".join(lines)


def machine() -> str:
    return (f"Measured on the development VM ({platform.machine()}, {os.cpu_count()} cores, "
            f"{_cpu()}), Python {platform.python_version()}, torch {torch.__version__}, "
            f"Ray {ray_version()}.")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def ray_version() -> str:
    import ray

    return ray.__version__


def start_ray() -> None:
    """One local Ray instance for the whole benchmark, offering the four workers."""
    import ray

    ray.init(address="local", resources={resource(d): 1.0 for d in
                                         ew.Cluster.load(QUARTERS_CLUSTER).names},
             include_dashboard=False, log_to_driver=False, logging_level="error")


def main() -> None:
    import ray

    start_ray()
    rows = []
    for label, n_bytes in SIZES.items():
        plan, graph, x = chain_plan(n_bytes)
        row = {"size": label, "pipe": pipe_one_way_s(n_bytes), "tcp": tcp_one_way_s(n_bytes),
               "local": backend_unit_s(plan, x, backend="local"),
               "ray plain": backend_unit_s(plan, x, backend="ray", mode="plain"),
               "ray compiled": backend_unit_s(plan, x, backend="ray",
                                              mode="compiled")}
        rows.append(row)
        print(row, file=sys.stderr)
    lines = [machine(), "", "| tensor per hop | raw: bytes through a pipe | raw: loopback TCP | local backend | "
             "ray, plain calls | ray, compiled graph |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['size']} | " + " | ".join(
            f"{row[k] * 1e3:.3f} ms" for k in ("pipe", "tcp", "local", "ray plain",
                                               "ray compiled")) + " |")
    write_section("overhead", "\n".join(lines))
    write_section("modes", machine() + "\n\n" + modes())
    ray.shutdown()


if __name__ == "__main__":
    if sys.argv[1:] == ["modes"]:  # the whole-plan table alone
        start_ray()
        write_section("modes", machine() + "\n\n" + modes())
    else:
        main()
