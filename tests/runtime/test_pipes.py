"""The local backend's pipes: tensors through a shared ring arrive equal and in order, the
ring never hands out space that is still being read, and a dead writer ends the reader."""

from __future__ import annotations

import multiprocessing
import queue

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeweave.runtime import pipes
from edgeweave.runtime.pipes import Sender, _Ring, read_into

DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.uint8, torch.bool)


def _pair(answer=None):
    reader, writer = multiprocessing.Pipe(duplex=False)
    inbox: queue.Queue = queue.Queue()
    read_into(reader, "peer", inbox, answer)
    return Sender(writer), inbox, writer


@st.composite
def tensors(draw):
    """Tensors of any layout: transposed, strided views, dimensions of size 1 and 0 with
    any stride (a region of shape (1, 1, 1) cut from a permuted tensor, say)."""
    shape = tuple(draw(st.lists(st.integers(0, 40), min_size=0, max_size=3)))
    dtype = draw(st.sampled_from(DTYPES))
    tensor = (torch.rand(shape) * 100).to(dtype)
    if draw(st.booleans()) and tensor.dim() >= 2:
        tensor = tensor.transpose(0, 1)  # not contiguous
    if draw(st.booleans()) and tensor.numel():
        strides = tuple(draw(st.integers(1, 50)) if n == 1 else s
                        for n, s in zip(tensor.shape, tensor.stride()))
        tensor = tensor.as_strided(tensor.shape, strides)  # odd strides on sizes of 1
    if draw(st.booleans()) and tensor.dim() >= 1 and tensor.shape[-1] > 1:
        tensor = tensor[..., ::2]  # every other element of the last dimension
    return tensor


@settings(max_examples=25, deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=12), st.integers(1, 4))
def test_tensors_arrive_equal_and_in_order(sent, kib):
    saved = pipes.BY_VALUE_BYTES, pipes.FIRST_ARENA_BYTES
    # tiny arenas: messages wrap round the ring and make it grow
    pipes.BY_VALUE_BYTES, pipes.FIRST_ARENA_BYTES = 64, kib << 10
    try:
        sender, inbox, _ = _pair()
        for index, tensor in enumerate(sent):
            sender.post(("t", index, tensor, {"nested": [tensor]}))
        for index, tensor in enumerate(sent):
            _, (kind, number, received, nested) = inbox.get(timeout=10)
            assert number == index and received.dtype == tensor.dtype
            assert received.shape == tensor.shape and torch.equal(received, tensor)
            assert torch.equal(nested["nested"][0], tensor)
    finally:
        pipes.BY_VALUE_BYTES, pipes.FIRST_ARENA_BYTES = saved


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3000), st.booleans()), min_size=1, max_size=40))
def test_the_ring_never_overlaps_what_is_unread(steps):
    """Brute force: every placed and unread block lies inside the ring and overlaps no
    other; a block that does not fit is refused, never squeezed in."""
    ring = _Ring(4096)
    unread: list[tuple[int, int, int]] = []  # (offset, size, end counter), in order
    for n_bytes, read_one in steps:
        if read_one and unread:  # the receiver copies the oldest out and frees it
            ring.tail[0] = unread.pop(0)[2]
        spot = ring.place(n_bytes)
        if spot is None:  # refused only while something is unread
            assert unread
            continue
        offset, end = spot
        assert pipes.HEADER <= offset and offset + n_bytes <= pipes.HEADER + ring.capacity
        for other, size, _ in unread:
            assert offset + n_bytes <= other or other + size <= offset
        unread.append((offset, n_bytes, end))


def test_an_empty_ring_takes_any_block_that_fits():
    ring = _Ring(4096)
    assert ring.place(4096) is not None
    assert ring.place(1) is None  # full until the receiver reads
    ring.tail[0] = ring.head
    assert ring.place(4000) is not None


def test_modules_keep_their_parameters():
    sender, inbox, _ = _pair()
    layer = torch.nn.Linear(3, 2)
    sender.post(("replan", layer))
    _, (_, received) = inbox.get(timeout=10)
    assert isinstance(received.weight, torch.nn.Parameter)
    assert torch.equal(received.weight, layer.weight)


def test_a_closed_writer_ends_the_reader():
    sender, inbox, writer = _pair()
    sender.post(("t", torch.ones(10_000)))
    sender.flush()
    writer.close()
    assert inbox.get(timeout=10)[1][0] == "t"
    assert inbox.get(timeout=10) == ("peer", None)


def test_answered_messages_skip_the_inbox():
    answered = []
    sender, inbox, _ = _pair(lambda who, m: m[0] == "steal" and not answered.append(m))
    sender.post(("steal", "me"))
    sender.post(("t", torch.zeros(3)))
    assert inbox.get(timeout=10)[1][0] == "t"
    assert answered == [("steal", "me")]
