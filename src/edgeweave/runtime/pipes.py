"""What carries messages between local processes: one pipe per ordered pair, drained by a
thread of its own and written either by whoever posts (when the pipe is empty, so the
write cannot block) or by a thread of its own, so that no process waits on a slow, frozen
or dead peer.

Tensors do not travel through the pipe. Each pipe has an *arena*: one block of shared
memory that its sender creates on first use and passes to its receiver once, used as a
ring. The sender copies a tensor into the ring and pickles only where it lies; the
receiver copies it out on its reader thread as the message arrives, and moves the ring's
tail in the arena's header so that the sender can reuse the space. A tensor costs a copy
on each side, not a fresh shared-memory segment (whose file descriptor travels through a
helper thread of the sender, milliseconds on a busy host: ``bench/queue_packing.py``) nor
the pipe's small buffer. A ring too full grows (a new, larger arena); tiny tensors, and
tensors past the largest arena, go by value. A process killed in the middle of a send only
spoils its own pipes and arenas, which its peers then drop.
"""

from __future__ import annotations

import fcntl
import io
import pickle
import queue
import sys
import termios
import threading
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler

import torch
import torch.multiprocessing  # noqa: F401 - registers the reductions that share an arena

BY_VALUE_BYTES = 4096  # below this a tensor is cheaper pickled with the message
ALIGN = 64
HEADER = ALIGN  # the ring's tail, an int64, written by the receiver
FIRST_ARENA_BYTES = 8 << 20
LARGEST_ARENA_BYTES = 512 << 20
F_GETPIPE_SZ = 1032  # fcntl: a Linux pipe's capacity
FRAMING_BYTES = 16  # what a Connection adds to each message's bytes
PAGE_BYTES = 4096


class _Ring:
    """The sender's side of an arena: where the next tensor goes, or that none fits."""

    def __init__(self, capacity: int) -> None:
        capacity = -(-capacity // ALIGN) * ALIGN  # every block starts aligned for any dtype
        self.block = torch.zeros(HEADER + capacity, dtype=torch.uint8).share_memory_()
        self.tail = self.block[:8].view(torch.int64)
        self.capacity, self.head = capacity, 0
        self.announced = False

    def place(self, n_bytes: int) -> tuple[int, int] | None:
        """(offset, end counter) of ``n_bytes`` in the ring, or None if it has no room."""
        size = -(-n_bytes // ALIGN) * ALIGN
        position = self.head % self.capacity
        skip = self.capacity - position if position + size > self.capacity else 0
        tail = int(self.tail[0])  # counters: the ring holds [tail, head) unread
        if size > self.capacity or (tail != self.head
                                    and self.head + skip + size - tail > self.capacity):
            return None
        self.head += skip + size
        return HEADER + (0 if skip else position), self.head


class _Pickler(ForkingPickler):
    """Plain CPU tensors into the arena; anything else (parameters inside a re-planned
    model, meta tensors) as ``multiprocessing`` would send it."""

    def __init__(self, file, sender: Sender) -> None:
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.sender = sender

    def persistent_id(self, obj):
        if (type(obj) is torch.Tensor and obj.layout == torch.strided
                and obj.device.type == "cpu"):
            return self.sender.place(obj)
        return None


class Sender:
    """One outgoing pipe. A message is pickled (its tensors placed in the arena) by whoever
    posts it, and written at once when nothing is queued before it and the pipe has room
    for it, so that a write can never block; otherwise it waits for the pipe's own writer
    thread. Whoever posts never waits on a slow, frozen or dead receiver; a pipe that
    breaks drops what is posted after. Tensors in a message must not change until it is
    sent."""

    def __init__(self, connection) -> None:
        self.connection, self.queue = connection, queue.Queue()
        self.broken = False
        self.ring: _Ring | None = None
        self.lock = threading.Lock()  # one message pickled, placed and written at a time
        self.queued = 0  # messages handed to the writer thread and not yet written
        try:
            self.capacity = fcntl.fcntl(connection.fileno(), F_GETPIPE_SZ)
        except OSError:  # not a Linux pipe: every message goes through the thread
            self.capacity = 0
        threading.Thread(target=self._drain, daemon=True).start()

    def post(self, message: tuple) -> None:
        """Send ``message``: now if the pipe surely takes it, else after what is queued."""
        if self.broken:
            return
        with self.lock:
            buffer = io.BytesIO()
            _Pickler(buffer, self).dump(message)
            data = buffer.getbuffer()
            if self.queued == 0 and len(data) + FRAMING_BYTES <= self._room():
                self._write(data)
                return
            self.queued += 1
            self.queue.put(data)

    def flush(self) -> None:
        """Wait until everything posted is sent (or dropped)."""
        self.queue.join()

    def _room(self) -> int:
        """Bytes the pipe surely takes now without blocking: none unless it is empty (a
        pipe holding a little may have its buffers full of part-pages), then all but a
        page."""
        if not self.capacity:
            return 0
        try:
            unread = fcntl.ioctl(self.connection.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except OSError:  # closed: the writer thread finds the pipe broken
            return 0
        return self.capacity - PAGE_BYTES if not int.from_bytes(unread, sys.byteorder) else 0

    def _write(self, data) -> None:
        if not self.broken:
            try:
                self.connection.send_bytes(data)
            except (OSError, ValueError):  # the receiver is gone
                self.broken = True

    def place(self, tensor: torch.Tensor) -> tuple:
        """What the message carries for ``tensor``: its bytes, or where it lies in the
        arena (announcing a new arena first)."""
        n_bytes = tensor.numel() * tensor.element_size()
        if n_bytes <= BY_VALUE_BYTES:
            return _by_value(tensor)
        spot = self.ring.place(n_bytes) if self.ring is not None else None
        if spot is None:
            capacity = max(FIRST_ARENA_BYTES, 4 * n_bytes,
                           2 * self.ring.capacity if self.ring is not None else 0)
            if capacity > LARGEST_ARENA_BYTES:
                return _by_value(tensor)
            self.ring = _Ring(capacity)
            spot = self.ring.place(n_bytes)
        offset, end = spot
        ring = self.ring
        destination = ring.block[offset:offset + n_bytes].view(tensor.dtype)
        destination.view(tensor.shape).copy_(tensor.detach())
        block = None
        if not ring.announced:  # the receiver maps the arena once, from this message
            block, ring.announced = bytes(ForkingPickler.dumps(ring.block)), True
        return ("arena", block, offset, n_bytes, end, tensor.dtype, tuple(tensor.shape))

    def _drain(self) -> None:
        while True:
            data = self.queue.get()
            self._write(data)  # outside the lock: this may wait on a full pipe
            with self.lock:
                self.queued -= 1
            self.queue.task_done()


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, arena: list[torch.Tensor]) -> None:
        super().__init__(io.BytesIO(data))
        self.arena = arena  # the pipe's current arena, once its sender announced one

    def persistent_load(self, pid) -> torch.Tensor:
        if pid[0] == "value":
            _, data, dtype, shape = pid
            if not data:
                return torch.empty(shape, dtype=dtype)
            return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(
                dtype).reshape(shape)
        _, block, offset, n_bytes, end, dtype, shape = pid
        if block is not None:  # messages come in order: the previous arena is done with
            self.arena[:] = [ForkingPickler.loads(block)]
        arena = self.arena[0]
        tensor = arena[offset:offset + n_bytes].view(dtype).view(shape).clone()
        arena[:8].view(torch.int64)[0] = end  # its space in the ring is free again
        return tensor


def read_into(connection, sender: str, inbox: queue.Queue,
              answer: Callable[[str, tuple], bool] | None = None) -> threading.Thread:
    """Drain one incoming pipe into ``inbox`` on a thread, as (sender, message); a pipe
    whose writer died ends with (sender, None). Messages that ``answer`` handles (it
    returns True) are answered on that thread instead, while the receiver is busy."""
    def drain() -> None:
        arena: list[torch.Tensor] = []
        while True:
            try:
                message = _Unpickler(connection.recv_bytes(), arena).load()
            except Exception:  # EOF, or a message cut off by a killed writer
                inbox.put((sender, None))
                return
            if answer is None or not answer(sender, message):
                inbox.put((sender, message))
    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


def _by_value(tensor: torch.Tensor) -> tuple:
    """A tensor's bytes (any dtype, numpy's or not, any strides), its dtype and shape."""
    # a fresh flat copy: ``contiguous()`` keeps the strides of dimensions of size 1, and a
    # tensor whose last stride is not 1 cannot be viewed as bytes
    flat = torch.empty(tensor.numel(), dtype=tensor.dtype).copy_(tensor.detach().reshape(-1))
    data = flat.view(torch.uint8).numpy().tobytes()
    return ("value", data, tensor.dtype, tuple(tensor.shape))
