"""Layer-by-layer placement and its clock: the common ground of EdgeFlow and its baselines.

EdgeFlow (seed 002) and its layer-by-layer baselines place one layer at a time, in
topological order, each decision depending on where and when the layer's inputs became
available. ``Progress`` keeps that state — for every placed layer the region each device
computed and when it finished, when each device and each link is free again — and tells
what placing the next layer as some bands would cost, with the simulator's rules: a device
runs its pieces in the order placed, paying its per-segment overhead for a piece that starts
a segment; a region it needs from another device travels after its producer finishes, once
per device, on a link (or shared medium) that carries one transfer at a time, arriving
``latency`` later. The plan's prediction is ``simulate`` itself; this clock decides, layer
by layer, and differs from it only where a transfer booked late belongs before one booked
earlier on the same channel, or a later layer's read ends a device's segment behind pieces
already placed (``earliest_gap``, ``Progress.place``). ``partition`` drives the placement
with a rule for how many rows of a layer each device computes.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import ChainMap
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field

from edgeweave.cluster import Device
from edgeweave.errors import PlanError
from edgeweave.graph import LayerGraph, OpKind
from edgeweave.planners.problem import Problem
from edgeweave.units import Part, Plan, Region, build_plan, footprints, input_regions


@dataclass(frozen=True)
class Piece:
    """A region of a layer's output computed on a device, and when it is ready there."""

    device: str
    region: Region
    finish_s: float


@dataclass
class Progress:
    """The placed pieces of every layer, and when each device and channel is free."""

    problem: Problem
    pieces: dict[tuple[str, str], list[Piece]] = field(default_factory=dict)
    device_free: MutableMapping[str, float] = field(default_factory=dict)
    # channel -> the (start, end) of every transfer booked on it, sorted
    booked: MutableMapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    # (graph, layer, device the piece is on, device it went to, region) -> arrival
    sent: MutableMapping[tuple[str, str, str, str, Region], float] = field(
        default_factory=dict)
    # device -> the model of its open segment (None: its last piece sent elsewhere)
    open_on: MutableMapping[str, str | None] = field(default_factory=dict)
    latest: MutableMapping[str, Piece] = field(default_factory=dict)  # device -> last piece
    weights: dict[str, int] = field(default_factory=dict)
    parts: list[Part] = field(default_factory=list)
    done_s: float = 0.0  # when every placed layer is done (outputs back at the source)
    reserve: dict[str, int] = field(default_factory=dict)  # graph -> its largest activation

    def __post_init__(self) -> None:
        for graph in self.problem.graphs.values():
            source = self.problem.source_of(graph)
            arrival = self.problem.streams[graph.name].arrival_s(0)
            self.reserve[graph.name] = max(n.input_bytes + n.output_bytes for n in graph)
            for name in graph.inputs:  # each input a segment of its own on the source
                finish = max(self.device_free.get(source.name, 0.0), arrival) + \
                    source.segment_overhead_s
                piece = Piece(source.name, Region.full(graph[name].output_shape), finish)
                self.pieces[(graph.name, name)] = [piece]
                self.device_free[source.name] = finish
                self.open_on[source.name], self.latest[source.name] = graph.name, piece

    def held(self, graph: LayerGraph, layer: str) -> list[Piece]:
        """The pieces of a placed layer."""
        return self.pieces[(graph.name, layer)]

    def channel_free(self, channel: str) -> float:
        """When the last transfer booked on ``channel`` ends."""
        return self.booked[channel][-1][1] if self.booked.get(channel) else 0.0

    def fits(self, graph: LayerGraph, layer: str, device: Device) -> bool:
        """Whether ``device`` has the memory for the layer's weights beside those it holds,
        keeping room for the model's largest activation (a layer's inputs and output)."""
        needed = graph[layer].param_bytes + self.reserve[graph.name]
        return self.weights.get(device.name, 0) + needed <= device.memory_bytes

    def devices_for(self, graph: LayerGraph, layer: str) -> list[Device]:
        """The devices that have the memory for the layer (``fits``)."""
        devices = [d for d in self.problem.cluster.devices if self.fits(graph, layer, d)]
        if not devices:
            raise PlanError(f"No device of cluster '{self.problem.cluster.name}' has the "
                            f"memory for layer '{layer}' of '{graph.name}' "
                            f"({graph[layer].param_bytes} bytes of weights) besides what it "
                            f"already holds.")
        return devices

    def plan(self, name: str) -> Plan:
        """The plan of every piece placed, each device's in the order placed; ``notes``
        give the layers split, the simulated latency (``predicted_ms``: one clock for
        every planner, the simulator's), the placement clock's own estimate
        (``placement_ms``) and each device's memory footprint."""
        from edgeweave.simulation import predicted_s

        problem = self.problem
        order: dict[str, list[int]] = {}
        for index, part in enumerate(self.parts):
            order.setdefault(part.device, []).append(index)
        made = build_plan(problem.graphs, problem.cluster, self.parts, order, planner=name,
                          options=problem.options, models=problem.models,
                          workload=problem.streams)
        whole = sum(p.region == Region.full(problem.graphs[p.graph][p.layers[-1]].output_shape)
                    for p in self.parts)
        layers = len({(p.graph, p.layers) for p in self.parts})
        notes = {"split_layers": layers - whole,
                 "summary": f"{layers - whole} of {layers} layers split over devices",
                 "predicted_ms": 1e3 * predicted_s(made),
                 "placement_ms": 1e3 * self.done_s,
                 "footprint_bytes": {d: f.total_bytes for d, f in footprints(made).items()}}
        return dataclasses.replace(made, notes=notes)

    def place(self, graph: LayerGraph, layer: str, bands: Sequence[tuple[str, Region]],
              commit: bool = True) -> float:
        """Place ``bands`` (device, region of the layer's output) and return when the last
        finishes; with ``commit`` false, only say when.

        A band pays its device's per-segment overhead when it starts a segment
        (``units.segments``): it reads from another device, or its device's last piece was
        read by another device — now, by this layer (a read of an older piece, which the
        simulator would also count, is not charged back)."""
        tables = ("device_free", "booked", "sent", "open_on", "latest")
        saved = {name: getattr(self, name) for name in tables}
        if not commit:  # write into overlays, dropped afterwards
            for name, table in saved.items():
                setattr(self, name, ChainMap({}, table))
        reads = [self._reads(graph, layer, region) for _, region in bands]
        closed = {piece.device for (device, _), read in zip(bands, reads) for _, piece, _ in read
                  if piece.device != device and self.latest.get(piece.device) is piece}
        pieces = []
        for (device, region), read in zip(bands, reads):
            ready = max((self._arrival(graph, producer, piece, part, device)
                         for producer, piece, part in read), default=0.0)
            joins = (self.open_on.get(device) == graph.name and device not in closed
                     and all(piece.device == device for _, piece, _ in read))
            target = self.problem.cluster.device(device)
            start = max(self.device_free.get(device, 0.0), ready)
            share = region.numel / Region.full(graph[layer].output_shape).numel
            finish = start + (0.0 if joins else target.segment_overhead_s) + \
                self.problem.cost.compute_s(graph, graph[layer], target, min(1.0, share))
            piece = Piece(device, region, finish)
            self.device_free[device], self.latest[device] = finish, piece
            self.open_on[device] = graph.name
            pieces.append(piece)
        for device in closed - {device for device, _ in bands}:
            self.open_on[device] = None
        end = max(piece.finish_s for piece in pieces)
        if layer in graph.outputs:  # a frame is done when its outputs are back at the source
            source = self.problem.source_of(graph).name
            end = max(self._arrival(graph, layer, piece, piece.region, source)
                      for piece in pieces)
            for piece in pieces:
                if piece.device != source:
                    self.open_on[piece.device] = None
        if not commit:
            for name, table in saved.items():
                setattr(self, name, table)
            return end
        self.pieces[(graph.name, layer)] = pieces
        self.done_s = max(self.done_s, end)
        for device, region in bands:
            self.weights[device] = self.weights.get(device, 0) + graph[layer].param_bytes
            self.parts.append(Part(graph.name, (layer,), region, device))
        return end

    def _reads(self, graph: LayerGraph, layer: str, region: Region
               ) -> list[tuple[str, Piece, Region]]:
        """What computing ``region`` of ``layer`` reads: (producer, its piece, the part)."""
        reads = []
        for producer, need in zip(graph[layer].inputs, input_regions(graph[layer], region),
                                  strict=True):
            shape = graph[producer].output_shape
            need = need.clip(shape) if shape is not None and need.ndim == len(shape) else need
            if need.bounds and need.is_empty:
                continue
            for piece in self.held(graph, producer):
                part = piece.region.intersect(need) if need.bounds else piece.region
                if not (part.bounds and part.is_empty):
                    reads.append((producer, piece, part))
        return reads

    def _arrival(self, graph: LayerGraph, producer: str, piece: Piece, part: Region,
                 device: str) -> float:
        if piece.device == device:
            return piece.finish_s
        key = (graph.name, producer, piece.device, device, part)
        if key not in self.sent:  # as the simulator: each region once per device
            link = self.problem.cluster.link(piece.device, device)
            seconds = self.problem.cost.occupancy_s(part.numel * graph[producer].itemsize, link)
            booked = self.booked.get(link.channel, ())
            start = earliest_gap(booked, piece.finish_s, seconds)
            at = bisect.bisect(booked, (start, start + seconds))
            self.booked[link.channel] = (*booked[:at], (start, start + seconds), *booked[at:])
            self.sent[key] = start + seconds + link.latency_s
        return self.sent[key]

    def best_single(self, graph: LayerGraph, layer: str, devices: Sequence[Device]
                    ) -> tuple[float, str]:
        """The device that would finish the whole layer first, and when."""
        full = Region.full(graph[layer].output_shape)
        return min((self.place(graph, layer, [(d.name, full)], commit=False), d.name)
                   for d in devices)


def earliest_gap(booked: Sequence[tuple[float, float]], ready_s: float, seconds: float
                 ) -> float:
    """When a transfer of ``seconds`` ready at ``ready_s`` starts on a channel with the
    sorted ``booked`` intervals: the first gap that holds it. The simulator books each
    transfer when it is requested, in time order, so it only ever finds the gap after the
    last; a planner places layer after layer, and a transfer it books may be requested
    before some already booked — the gap it finds is where the simulator's would go, as
    long as it does not push back those booked after it (which the placement clock does not
    model)."""
    start = ready_s
    for begin, end in booked[max(0, bisect.bisect_left(booked, (ready_s,)) - 1):]:
        if end <= start:
            continue
        if begin >= start + seconds:
            break
        start = end
    return start


def split_dim(graph: LayerGraph, layer: str) -> int | None:
    """The dimension a layer is split along — rows of a feature map, else channels or
    features — or None when the layer runs whole (ops whose pieces would each need the
    whole op, reshapes, a dimension of size 1)."""
    node = graph[layer]
    shape = node.output_shape
    if shape is None or node.kind not in _SPLITTABLE or len(shape) < 2:
        return None
    dim = 2 if len(shape) >= 4 and shape[2] > 1 else 1 if len(shape) >= 3 else len(shape) - 1
    return dim if shape[dim] > 1 else None


_SPLITTABLE = {OpKind.CONV, OpKind.POOL, OpKind.ELEMENTWISE, OpKind.CONCAT, OpKind.UPSAMPLE,
               OpKind.LINEAR, OpKind.ADAPTIVE_POOL}


def bands(graph: LayerGraph, layer: str, dim: int, rows: Sequence[tuple[str, int]]
          ) -> list[tuple[str, Region]]:
    """Consecutive bands along ``dim``: each device's whole number of rows (or channels),
    in the order given; devices with none get no band."""
    full = Region.full(graph[layer].output_shape)
    result, start = [], 0
    for device, count in rows:
        if count > 0:
            result.append((device, full.along(dim, start, start + count)))
            start += count
    return result


def round_shares(shares: Sequence[float], total: int) -> list[int]:
    """Whole rows for fractional shares summing to 1: floors, then the rows left over to
    the largest remainders (ties to the first), so that every row is covered once."""
    exact = [max(0.0, s) * total for s in shares]
    rows = [int(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: (rows[i] - exact[i], i))[:total - sum(rows)]:
        rows[i] += 1
    return rows


RowsRule = Callable[[Progress, LayerGraph, str, int, list[Device]], list[int]]


def partition(problem: Problem, rows_rule: RowsRule, always_split: bool = False) -> Progress:
    """Place every layer of every model in topological order: a layer that can be split
    gets ``rows_rule(progress, graph, layer, dim, devices)`` rows on each device (in the
    devices' order), kept — unless ``always_split`` — only where that completes sooner
    than the whole layer on the device that would finish it first; other layers go whole
    to that device. Devices without the memory for a layer get none of it."""
    progress = Progress(problem)
    for graph in problem.graphs.values():
        for layer in problem.layers(graph):
            devices = progress.devices_for(graph, layer)
            single_s, single = progress.best_single(graph, layer, devices)
            choice = [(single, Region.full(graph[layer].output_shape))]
            dim = split_dim(graph, layer)
            if dim is not None and len(devices) > 1:
                rows = rows_rule(progress, graph, layer, dim, devices)
                split = bands(graph, layer, dim, list(zip((d.name for d in devices), rows)))
                if len(split) > 1 and (always_split or progress.place(
                        graph, layer, split, commit=False) < single_s - 1e-12):
                    choice = split
            progress.place(graph, layer, choice)
    return progress


def on_one_device(problem: Problem, device: Device) -> Progress | None:
    """Every layer whole on ``device``, in topological order (None: it lacks the memory)."""
    progress = Progress(problem)
    for graph in problem.graphs.values():
        for layer in problem.layers(graph):
            if not progress.fits(graph, layer, device):
                return None
            progress.place(graph, layer, [(device.name, Region.full(graph[layer].output_shape))])
    return progress
