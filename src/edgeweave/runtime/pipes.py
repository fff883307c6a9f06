"""What carries messages between local processes: one pipe per ordered pair, written by
a thread of its own and drained by a thread of its own, so that no process waits on a
slow, frozen or dead peer; tensors packed by value when small, in shared memory when large.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import torch

# Below this size a tensor is cheaper pickled through a pipe than moved to a fresh
# shared-memory segment (bench/queue_packing.py measures both).
BY_VALUE_BYTES = 1 << 18


class Sender:
    """One outgoing pipe, written by its own thread, so that whoever posts never waits on
    a slow, frozen or dead receiver; a pipe that breaks drops what is posted after."""

    def __init__(self, connection) -> None:
        self.connection, self.queue = connection, queue.Queue()
        self.broken = False
        threading.Thread(target=self._drain, daemon=True).start()

    def post(self, message: tuple) -> None:
        if not self.broken:
            self.queue.put(message)

    def flush(self) -> None:
        """Wait until everything posted is sent (or dropped)."""
        self.queue.join()

    def _drain(self) -> None:
        while True:
            message = self.queue.get()
            if not self.broken:
                try:
                    self.connection.send(message)
                except (OSError, ValueError):  # the receiver is gone
                    self.broken = True
            self.queue.task_done()


def read_into(connection, sender: str, inbox: queue.Queue,
              answer: Callable[[str, tuple], bool] | None = None) -> threading.Thread:
    """Drain one incoming pipe into ``inbox`` on a thread, as (sender, message); a pipe
    whose writer died ends with (sender, None). Messages that ``answer`` handles (it
    returns True) are answered on that thread instead, while the receiver is busy."""
    def drain() -> None:
        while True:
            try:
                message = connection.recv()
            except Exception:  # EOF, or a message cut off by a killed writer
                inbox.put((sender, None))
                return
            if answer is None or not answer(sender, message):
                inbox.put((sender, message))
    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


def packed(tensor: torch.Tensor):
    """What to send for ``tensor``: a numpy copy (pickled by value) when small; else a
    private copy in shared memory."""
    if tensor.numel() * tensor.element_size() <= BY_VALUE_BYTES:
        try:
            return tensor.detach().numpy().copy()
        except TypeError:  # a dtype numpy lacks (bfloat16): shared memory it is
            pass
    return tensor.clone(memory_format=torch.contiguous_format).share_memory_()


def unpacked(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(value)
