"""Pickled by value or moved to shared memory: which is cheaper through a queue, by size?

The local backend sends a tensor between worker processes through a torch
multiprocessing queue either as a numpy copy pickled through the queue's pipe, or as a
private copy in a fresh shared-memory segment. This measures the one-way time of each
(half a ping-pong round trip, median of 30) for sizes from 4 KiB to 4 MiB; the backend's
threshold (``runtime.pipes.BY_VALUE_BYTES``) sits where they cross.

Writes the "packing" section of docs/benchmarks.md. Run: .venv/bin/python bench/queue_packing.py
"""

from __future__ import annotations

import platform
import statistics
import time

import torch
import torch.multiprocessing as mp

from sections import write_section

SIZES = (1 << 12, 1 << 16, 1 << 18, 1 << 20, 1 << 22)
WAYS = {"shared memory": lambda t: t.clone().share_memory_(),
        "by value": lambda t: t.numpy().copy()}


def _echo(inbox, outbox) -> None:
    while (value := inbox.get()) is not None:
        outbox.put(value)


def main() -> None:
    context = mp.get_context("spawn")
    inbox, outbox = context.Queue(), context.Queue()
    echo = context.Process(target=_echo, args=(inbox, outbox), daemon=True)
    echo.start()
    lines = [f"Measured on the development VM ({platform.machine()}, 2 cores), torch "
             f"{torch.__version__}; one-way time, median of 30.", "",
             "| tensor | " + " | ".join(WAYS) + " |", "|---|---|---|"]
    for size in SIZES:
        tensor = torch.randn(size // 4)
        cells = []
        for pack in WAYS.values():
            times = []
            for _ in range(30):
                start = time.perf_counter()
                inbox.put(pack(tensor))
                outbox.get()
                times.append((time.perf_counter() - start) / 2)
            cells.append(f"{statistics.median(times) * 1e3:.3f} ms")
        lines.append(f"| {size // 1024} KiB | " + " | ".join(cells) + " |")
        print(lines[-1])
    inbox.put(None)
    echo.join()
    write_section("packing", "\n".join(lines))


if __name__ == "__main__":
    main()
