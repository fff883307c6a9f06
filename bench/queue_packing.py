"""How a tensor travels between two local processes, by size: three ways, one-way time.

- a fresh shared-memory segment per tensor, pickled by ``multiprocessing`` (its file
  descriptor travels through a helper thread of the sender): the local backend's way
  before ``runtime.pipes`` had arenas;
- by value: a numpy copy pickled through the pipe;
- the local backend's pipes (``runtime.pipes``): the tensor copied into the pipe's
  shared ring, only its place pickled, copied out by the receiver's reader thread — with
  the backend's sender and reader threads on both sides.

Half a ping-pong round trip, median of 30, sizes from 4 KiB to 4 MiB. Writes the
"packing" section of docs/benchmarks.md. Run: .venv/bin/python bench/queue_packing.py
"""

from __future__ import annotations

import os
import platform
import queue
import statistics
import time

import torch
import torch.multiprocessing as mp

from edgeweave.runtime.pipes import Sender, read_into
from sections import write_section

SIZES = (1 << 12, 1 << 16, 1 << 18, 1 << 20, 1 << 22)
ROUNDS = 30


def _echo_raw(inbox, outbox) -> None:
    while (value := inbox.recv()) is not None:
        outbox.send(value)


def _echo_pipes(inbox, outbox) -> None:
    messages: queue.Queue = queue.Queue()
    read_into(inbox, "bench", messages)
    sender = Sender(outbox)
    while (message := messages.get()[1]) is not None and message[0] != "stop":
        sender.post(message)


def one_way_s(send, receive, tensor: torch.Tensor) -> list[float]:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        send(tensor)
        receive()
        times.append((time.perf_counter() - start) / 2)
    return times


def main() -> None:
    context = mp.get_context("spawn")
    (raw_in, to_raw), (from_raw, raw_out) = context.Pipe(False), context.Pipe(False)
    (pipes_in, to_pipes), (from_pipes, pipes_out) = context.Pipe(False), context.Pipe(False)
    echoes = [context.Process(target=_echo_raw, args=(raw_in, raw_out), daemon=True),
              context.Process(target=_echo_pipes, args=(pipes_in, pipes_out), daemon=True)]
    for echo in echoes:
        echo.start()
    sender, replies = Sender(to_pipes), queue.Queue()
    read_into(from_pipes, "echo", replies)
    ways = {
        "fresh shared-memory segment": (lambda t: to_raw.send(t.clone().share_memory_()),
                                        from_raw.recv),
        "by value": (lambda t: to_raw.send(t.numpy().copy()), from_raw.recv),
        "edgeweave pipes (shared ring)": (lambda t: sender.post(("t", t)), replies.get),
    }
    lines = [f"Measured on the development VM ({platform.machine()}, {os.cpu_count()} cores), "
             f"torch {torch.__version__}; one-way time, median of {ROUNDS}.", "",
             "| tensor | " + " | ".join(ways) + " |", "|---|---|---|---|"]
    for size in SIZES:
        tensor = torch.randn(size // 4)
        cells = [f"{statistics.median(one_way_s(send, receive, tensor)) * 1e3:.3f} ms"
                 for send, receive in ways.values()]
        lines.append(f"| {size // 1024} KiB | " + " | ".join(cells) + " |")
        print(lines[-1])
    to_raw.send(None)
    sender.post(("stop",))
    sender.flush()
    for echo in echoes:
        echo.join()
    write_section("packing", "\n".join(lines))


if __name__ == "__main__":
    main()
