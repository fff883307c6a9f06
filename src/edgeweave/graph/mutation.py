"""Writes that a captured graph's edges do not show.

A layer that writes into a tensor in place (``copy_`` into a slice, ``masked_fill_``,
``index_put_``, an ``inplace=True`` module) changes every tensor that shares its storage:
the tensor it wrote, its base, every other view. When a later layer reads such an alias
through a node that does not depend on the writer, the only thing ordering the write
before the read is memory, which a partitioned run does not share: the reader, on another
device or in another unit, gets the unwritten value. ``WriteWatcher`` finds such reads
while the graph runs once on the example — exactly, by the storages the values really
share, with no list of view or in-place ops — so that ``trace`` can capture the model
again with the writes made explicit (``torch.export``'s functionalised graph, where a write
into a view is a ``slice_scatter`` or ``index_put`` whose output the readers take).

A write no later reader can see through another node (``relu_`` on a fresh tensor,
``x += y`` whose result is read through the op's own output) is harmless: the region
kernels run an in-place layer on a copy of its input pieces, so the readers before it keep
the value they expect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import tree_leaves


@dataclass(frozen=True)
class HiddenWrite:
    """Layer ``reader`` reads the value of ``alias`` after layer ``writer`` wrote into
    memory that value shares, and ``alias`` does not depend on ``writer``."""

    writer: str
    alias: str
    reader: str

    def __str__(self) -> str:
        return (f"layer '{self.writer}' writes in place into memory that the output of layer "
                f"'{self.alias}' shares, and layer '{self.reader}' reads that output afterwards")


def _span(tensor: torch.Tensor) -> tuple[int, int]:
    """The bytes of its storage a tensor can touch, first and past the last: views of
    disjoint parts (the halves of a split) do not meet; interleaved ones (``y[:, 0::3]``
    and ``y[:, 1::3]``) count as meeting, which errs on the safe side."""
    size = tensor.element_size()
    start = tensor.storage_offset() * size
    if tensor.numel() == 0:
        return start, start
    reach = sum((n - 1) * stride for n, stride in zip(tensor.shape, tensor.stride()))
    return start, start + (reach + 1) * size


def _tensors(value: Any) -> list[torch.Tensor]:
    return [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)
            and t.layout is torch.strided and t.device.type != "meta"]


class WriteWatcher:
    """Watches a graph run node by node; ``hidden`` lists the reads a split run would get
    wrong, in the order they happen."""

    def __init__(self, graph: fx.Graph) -> None:
        self._order = {node: i for i, node in enumerate(graph.nodes)}
        # storage -> (writer, the storage's weak reference, the bytes written)
        self._written: dict[int, list[tuple[fx.Node, StorageWeakRef, tuple[int, int]]]] = {}
        self.hidden: list[HiddenWrite] = []

    def before(self, node: fx.Node, inputs: Mapping[fx.Node, Any]
               ) -> list[tuple[torch.Tensor, int]]:
        """Check ``node``'s reads against earlier writes; returns what ``after`` compares."""
        for producer, value in inputs.items():
            for tensor in _tensors(value):
                start, end = _span(tensor)
                for writer, ref, (low, high) in self._written.get(
                        tensor.untyped_storage()._cdata, ()):
                    if (not ref.expired() and low < end and start < high
                            and writer is not producer and writer is not node
                            and not self._depends_on(producer, writer)):
                        self.hidden.append(HiddenWrite(writer.name, producer.name, node.name))
        return [(t, t._version) for value in inputs.values() for t in _tensors(value)]

    def after(self, node: fx.Node, watched: Iterable[tuple[torch.Tensor, int]]) -> None:
        """Record the storages ``node`` wrote into (its inputs whose version moved)."""
        for tensor, version in watched:
            if tensor._version != version:
                storage = tensor.untyped_storage()
                self._written.setdefault(storage._cdata, []).append(
                    (node, StorageWeakRef(storage), _span(tensor)))

    def _depends_on(self, node: fx.Node, ancestor: fx.Node) -> bool:
        """Whether ``node``'s value is computed from ``ancestor``'s (nodes earlier than the
        ancestor cannot lead to it, so the walk stops there)."""
        floor, seen, frontier = self._order[ancestor], set(), [node]
        while frontier:
            current = frontier.pop()
            if current is ancestor:
                return True
            for source in current.all_input_nodes:
                if source not in seen and self._order[source] > floor - 1:
                    seen.add(source)
                    frontier.append(source)
        return False
