"""Piece-wise partitioning (seed 000): every layer cut in advance into a few *pieces* that
several devices can compute in parallel, as a graph of pieces and the bytes between them.

Jin, Park and Lee (MobiHoc 2022) split each conv and pool layer into 3 row bands of its
output (``floor(H / 3)`` rows each, the last band taking the rest) and each fully connected
layer into 3 groups; a piece has a *piece index* 0..2. Here any layer that can be split
(``progressive.split_dim``: rows of a feature map, else channels or features) is cut into
``count`` pieces along that dimension — a fully connected layer by output features, which
the region kernels compute exactly (the authors' split over input neurons would need
partial sums added up); a layer too small or not splittable is one piece of index 0. Each
piece's input needs come from the region arithmetic (``units.plan.reads``), so the bytes
between pieces are exact — a row band reads its halo from the neighbouring bands.

To keep the graph small, a layer that is the only reader of the single layer before it
and has that layer's shape (a batch norm or activation after a convolution) is computed in
the same piece as it: a piece is a run of layers over one region of the last.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from edgeweave.graph import LayerGraph, OpKind
from edgeweave.planners.problem import Problem
from edgeweave.planners.progressive import split_dim
from edgeweave.units import Region, Unit
from edgeweave.units.plan import layer_regions, reads


@dataclass(frozen=True)
class Piece:
    """``layers`` of ``graph`` computing ``region`` of the last; ``index`` its piece index
    (0 for a layer kept whole); a model input (``is_input``) computes nothing."""

    graph: str
    layers: tuple[str, ...]
    region: Region
    index: int
    is_input: bool = False


@dataclass(frozen=True)
class PieceGraph:
    """Pieces of every model, in a topological order, and the bytes each piece reads from
    another: ``edges`` as (producer, consumer, bytes), by position in ``pieces``."""

    pieces: tuple[Piece, ...]
    edges: tuple[tuple[int, int, int], ...]
    regions: Mapping[tuple[int, int], Region]  # per edge, the region of the layer it carries

    def predecessors(self) -> list[list[tuple[int, int]]]:
        """Per piece, its (producer, bytes)."""
        result: list[list[tuple[int, int]]] = [[] for _ in self.pieces]
        for producer, consumer, size in self.edges:
            result[consumer].append((producer, size))
        return result

    def successors(self) -> list[list[tuple[int, int]]]:
        """Per piece, its (consumer, bytes)."""
        result: list[list[tuple[int, int]]] = [[] for _ in self.pieces]
        for producer, consumer, size in self.edges:
            result[producer].append((consumer, size))
        return result


def runs(graph: LayerGraph) -> list[tuple[str, ...]]:
    """The model's layers as runs computed over one region: a layer joins the run of the
    one layer it reads when it is that layer's only reader and has its shape."""
    result: list[list[str]] = []
    run_of: dict[str, int] = {}
    for name in graph.topological_order():
        layer = graph[name]
        before = graph.predecessors(name)
        if (layer.kind is not OpKind.INPUT and len(before) == 1
                and graph[before[0]].kind is not OpKind.INPUT
                and graph.successors(before[0]) == (name,)
                and before[0] not in graph.outputs
                and layer.output_shape is not None
                and layer.output_shape == graph[before[0]].output_shape
                and split_dim(graph, name) == split_dim(graph, before[0])):
            run_of[name] = run_of[before[0]]
            result[run_of[name]].append(name)
        else:
            run_of[name] = len(result)
            result.append([name])
    return [tuple(run) for run in result]


def bands(size: int, count: int) -> list[tuple[int, int]]:
    """``count`` bands of ``size`` rows as the authors cut them: ``floor(size / count)``
    each, the last taking the rest (fewer bands when there are fewer rows)."""
    count = max(1, min(count, size))
    step = size // count
    return [(i * step, size if i == count - 1 else (i + 1) * step) for i in range(count)]


def piece_graph(graphs: Mapping[str, LayerGraph], count: int) -> PieceGraph:
    """Every model's runs cut into ``count`` pieces (1: layer-based), and their edges."""
    pieces: list[Piece] = []
    edges: list[tuple[int, int, int]] = []
    regions: dict[tuple[int, int], Region] = {}
    for graph in graphs.values():
        made: dict[str, list[int]] = {}  # a run's last layer -> its pieces
        for run in runs(graph):
            last = graph[run[-1]]
            full = Region.full(last.output_shape)
            dim = split_dim(graph, run[-1])
            cuts = [full] if dim is None or count == 1 else [
                full.along(dim, a, b) for a, b in bands(last.output_shape[dim], count)]
            for index, region in enumerate(cuts):
                piece = Piece(graph.name, run, region, index if len(cuts) > 1 else 0,
                              last.kind is OpKind.INPUT)
                position = len(pieces)
                pieces.append(piece)
                made.setdefault(run[-1], []).append(position)
                if piece.is_input:
                    continue
                unit = Unit("piece", graph.name, run, region, "")
                for layer, wanted in reads(unit, graph).items():
                    for producer in made[layer]:
                        shared = pieces[producer].region.intersect(wanted)
                        if not shared.is_empty:
                            edges.append((producer, position,
                                          shared.numel * graph[layer].itemsize))
                            regions[producer, position] = shared
    return PieceGraph(tuple(pieces), tuple(edges), regions)


def piece_seconds(problem: Problem, graph: LayerGraph, piece: Piece) -> dict[str, float]:
    """Seconds for each device to compute a piece: each layer's share of its output, the
    region of every layer of the run as its unit computes it (``units.timing``)."""
    if piece.is_input:
        return {d.name: 0.0 for d in problem.cluster.devices}
    regions = layer_regions(Unit("piece", graph.name, piece.layers, piece.region, ""), graph)
    shares = {name: min(1.0, region.numel / max(1, Region.full(graph[name].output_shape).numel))
              for name, region in regions.items()}
    return {d.name: sum(problem.cost.compute_s(graph, graph[name], d, share)
                        for name, share in shares.items()) for d in problem.cluster.devices}


def upward_ranks(pieces: PieceGraph, seconds: list[dict[str, float]],
                 seconds_per_byte: float) -> list[float]:
    """HEFT's upward rank of every piece: its mean compute time plus the largest, over its
    consumers, of the mean time to send them what they read and their rank."""
    after = pieces.successors()
    rank = [0.0] * len(pieces.pieces)
    for position in reversed(range(len(pieces.pieces))):  # pieces are in a topological order
        rank[position] = statistics.mean(seconds[position].values()) + max(
            (size * seconds_per_byte + rank[c] for c, size in after[position]), default=0.0)
    return rank
