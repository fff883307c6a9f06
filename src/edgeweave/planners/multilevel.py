"""Multilevel k-way partitioning of a piece graph into blocks (seed 000).

The three phases of Jin, Park and Lee's partitioner, as in the authors' code:

1. **Coarsening**: level after level, nodes visited in descending HEFT upward rank, each
   merged with its unmatched successor of the *same piece index* joined by the heaviest
   transfer, until each model has at most ``k`` nodes (or no merge is left).
2. **Initial partitioning**: the coarsest graph's nodes are the ``k`` blocks of their model.
3. **Uncoarsening**: the blocks are projected back level by level; at each level boundary
   Fiduccia–Mattheyses refinement moves boundary nodes to an adjacent block of their piece
   index, best gain (transfer bytes no longer cut) first, each node once, only moves that
   gain and keep the blocks balanced — so the cut never grows. The authors' code has the
   refinement switched off; ``refine=False`` does the same.

A block holds pieces of one model and one piece index, so that the pieces of a layer can
go to different devices. Model inputs are no block's: they stay on their source device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgeweave.planners.pieces import PieceGraph

BALANCE = 1.1  # a refined block may weigh this much over its model's mean block (or its max)


@dataclass(frozen=True)
class Blocks:
    """Each piece's block (-1 for model inputs) and how many blocks there are."""

    block_of: tuple[int, ...]
    count: int

    def members(self) -> list[list[int]]:
        """The pieces of each block."""
        result: list[list[int]] = [[] for _ in range(self.count)]
        for piece, block in enumerate(self.block_of):
            if block >= 0:
                result[block].append(piece)
        return result


def cut_bytes(pieces: PieceGraph, block_of: Sequence[int]) -> int:
    """Bytes on edges between different blocks (a model input's edges count as cut)."""
    return sum(size for a, b, size in pieces.edges
               if block_of[a] < 0 or block_of[a] != block_of[b])


def partition(pieces: PieceGraph, k: int, rank: Sequence[float], weight: Sequence[float],
              refine: bool = True) -> Blocks:
    """Blocks of at most ``k`` per model (fewer when a model has fewer nodes that can
    merge): coarsened by ``rank`` (upward rank per piece), refined by FM unless not
    ``refine``; ``weight`` is each piece's compute, which balance counts."""
    groups = [[p] for p, piece in enumerate(pieces.pieces) if not piece.is_input]
    levels: list[list[list[int]]] = [groups]
    while True:
        merged = _coarsen(pieces, levels[-1], k, rank)
        if len(merged) == len(levels[-1]):
            break
        levels.append(merged)
    block_of = [-1] * len(pieces.pieces)
    for block, group in enumerate(levels[-1]):
        for piece in group:
            block_of[piece] = block
    if refine:
        for level in reversed(levels[:-1]):
            _refine(pieces, level, block_of, weight)
    used = sorted({b for b in block_of if b >= 0})  # refinement may empty no block, but be safe
    renumber = {b: i for i, b in enumerate(used)}
    return Blocks(tuple(renumber.get(b, -1) for b in block_of), len(used))


def _coarsen(pieces: PieceGraph, nodes: list[list[int]], k: int, rank: Sequence[float]
             ) -> list[list[int]]:
    """One level: each node merged with its heaviest unmatched successor of the same piece
    index, while its model has more than ``k`` nodes."""
    node_of = {p: n for n, group in enumerate(nodes) for p in group}
    heavy: list[dict[int, int]] = [{} for _ in nodes]  # node -> successor node -> bytes
    for a, b, size in pieces.edges:
        if a in node_of and b in node_of and node_of[a] != node_of[b]:
            into = heavy[node_of[a]]
            into[node_of[b]] = into.get(node_of[b], 0) + size
    first = [pieces.pieces[group[0]] for group in nodes]
    left = {}
    for piece in first:
        left[piece.graph] = left.get(piece.graph, 0) + 1
    matched: dict[int, int] = {}
    for node in sorted(range(len(nodes)), key=lambda n: (-max(rank[p] for p in nodes[n]), n)):
        if node in matched or left[first[node].graph] <= k:
            continue
        options = [(size, -other) for other, size in heavy[node].items()
                   if other not in matched and first[other].index == first[node].index
                   and first[other].graph == first[node].graph]
        if options:
            other = -max(options)[1]
            matched[node], matched[other] = other, node
            left[first[node].graph] -= 1
    merged, done = [], set()
    for node, group in enumerate(nodes):
        if node in done:
            continue
        partner = matched.get(node)
        merged.append(sorted(group + (nodes[partner] if partner is not None else [])))
        done.update({node, partner} - {None})
    return merged


def _refine(pieces: PieceGraph, nodes: list[list[int]], block_of: list[int],
            weight: Sequence[float]) -> None:
    """Boundary FM at one level: nodes moved to adjacent blocks of their piece index, best
    gain first, each once, only when the cut shrinks and balance holds."""
    node_of = {p: n for n, group in enumerate(nodes) for p in group}
    around: list[dict[int, int]] = [{} for _ in nodes]  # node -> neighbour node -> bytes
    for a, b, size in pieces.edges:
        if a in node_of and b in node_of and node_of[a] != node_of[b]:
            na, nb = node_of[a], node_of[b]
            around[na][nb] = around[na].get(nb, 0) + size
            around[nb][na] = around[nb].get(na, 0) + size
    node_weight = [sum(weight[p] for p in group) for group in nodes]
    block_weight: dict[int, float] = {}
    block_size: dict[int, int] = {}
    index_of: dict[int, tuple[str, int]] = {}
    for n, group in enumerate(nodes):
        block = block_of[group[0]]
        block_weight[block] = block_weight.get(block, 0.0) + node_weight[n]
        block_size[block] = block_size.get(block, 0) + 1
        index_of[block] = (pieces.pieces[group[0]].graph, pieces.pieces[group[0]].index)
    by_model: dict[str, list[int]] = {}
    for block, (graph, _) in index_of.items():
        by_model.setdefault(graph, []).append(block)
    limit = {graph: max(BALANCE * sum(block_weight[b] for b in blocks) / len(blocks),
                        max(block_weight[b] for b in blocks))
             for graph, blocks in by_model.items()}

    def best_move(n: int) -> tuple[int, int]:
        """(gain, target block) of node ``n``'s best move (gain 0: none)."""
        own = block_of[nodes[n][0]]
        towards: dict[int, int] = {}
        for other, size in around[n].items():
            towards[block_of[nodes[other][0]]] = towards.get(
                block_of[nodes[other][0]], 0) + size
        stay = towards.get(own, 0)
        graph = index_of[own][0]
        candidates = [(size - stay, -target) for target, size in towards.items()
                      if target != own and index_of[target] == index_of[own]
                      and block_weight[target] + node_weight[n] <= limit[graph]]
        gain, target = max(candidates, default=(0, 0))
        return gain, -target

    locked: set[int] = set()
    while True:
        moves = [(*best_move(n), n) for n in range(len(nodes)) if n not in locked
                 and block_size[block_of[nodes[n][0]]] > 1]
        moves = [m for m in moves if m[0] > 0]
        if not moves:
            return
        gain, target, n = max(moves)
        own = block_of[nodes[n][0]]
        for p in nodes[n]:
            block_of[p] = target
        block_weight[own] -= node_weight[n]
        block_weight[target] += node_weight[n]
        block_size[own] -= 1
        block_size[target] += 1
        locked.add(n)
