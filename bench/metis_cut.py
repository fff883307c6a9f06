"""Seed 000's multilevel partitioner against METIS on the same piece graphs: the bytes cut
between blocks and the balance of the blocks' compute.

edgeweave's blocks (``planners.multilevel.partition``, k per model, coarsened by upward
rank, each block one model and one piece index) without and with boundary FM refinement,
beside METIS k-way (``pymetis``, the same total number of parts, edge weights the bytes in
KiB, vertex weights the pieces' mean compute in microseconds), which keeps neither models
nor piece indices apart: the comparison shows what the seed's constraint costs in cut and
balance. Balance: the heaviest block over the mean block.

Writes the "metis" section of docs/benchmarks.md.
Run: .venv/bin/python bench/metis_cut.py   (pymetis comes with the test extra)
"""

from __future__ import annotations

import numpy as np
import pymetis

from edgeweave.cluster import Cluster
from edgeweave.cost import CostModel
from edgeweave.experiments.zoo import traced
from edgeweave.planners.multilevel import cut_bytes, partition
from edgeweave.planners.pieces import piece_graph, piece_seconds, upward_ranks
from edgeweave.planners.problem import Problem
from sections import write_section

CLUSTER = "rpi4b*3+jetson-tx2+edge-server@wifi"
WORKLOADS = (("resnet18",), ("googlenet",), ("yolov5s",), ("alexnet", "googlenet", "resnet50"))
K = 21


def _balance(weight: list[float], parts: list[int]) -> float:
    totals: dict[int, float] = {}
    for piece, part in enumerate(parts):
        if part >= 0:
            totals[part] = totals.get(part, 0.0) + weight[piece]
    return max(totals.values()) / (sum(totals.values()) / len(totals))


def main() -> None:
    cluster = Cluster.load(CLUSTER)
    rows = []
    for names in WORKLOADS:
        graphs = {name: traced(name).graph for name in names}
        problem = Problem(graphs, cluster, CostModel.for_cluster(cluster), {}, {})
        pieces = piece_graph(graphs, 3)
        seconds = [piece_seconds(problem, graphs[p.graph], p) for p in pieces.pieces]
        weight = [float(np.mean(list(s.values()))) for s in seconds]
        rank = upward_ranks(pieces, seconds, 8.0 / cluster.links[0].bandwidth_bps)
        found = {}
        for refine in (False, True):
            blocks = partition(pieces, K, rank, weight, refine)
            found[refine] = (blocks.count, cut_bytes(pieces, blocks.block_of),
                             _balance(weight, list(blocks.block_of)))
        inside = [p for p, piece in enumerate(pieces.pieces) if not piece.is_input]
        index = {p: i for i, p in enumerate(inside)}
        around: list[dict[int, int]] = [{} for _ in inside]
        for a, b, size in pieces.edges:
            if a in index and b in index:
                kib = max(1, -(-size // 1024))
                around[index[a]][index[b]] = around[index[a]].get(index[b], 0) + kib
                around[index[b]][index[a]] = around[index[b]].get(index[a], 0) + kib
        xadj, adjncy, eweights = [0], [], []
        for neighbours in around:
            adjncy += list(neighbours)
            eweights += list(neighbours.values())
            xadj.append(len(adjncy))
        vweights = [max(1, round(1e6 * weight[p])) for p in inside]
        _, membership = pymetis.part_graph(found[True][0], pymetis.CSRAdjacency(xadj, adjncy),
                                           vweights=vweights, eweights=eweights)
        parts = [-1] * len(pieces.pieces)
        for i, p in enumerate(inside):
            parts[p] = membership[i]
        metis = (len(set(membership)), cut_bytes(pieces, parts), _balance(weight, parts))
        label = " + ".join(names)
        rows.append(f"| {label} | {len(inside)} | "
                    + " | ".join(f"{c} / {cut / 1e6:.2f} MB / {b:.2f}"
                                 for c, cut, b in (found[False], found[True], metis)) + " |")
        print(rows[-1], flush=True)
    lines = [f"Piece graphs at 3 pieces per layer, k = {K} blocks per model, mean compute "
             f"on `{CLUSTER}`; each cell: blocks / bytes cut (a model input's edges count "
             "as cut) / heaviest block over the mean.", "",
             "| workload | pieces | ours, no FM | ours, FM | METIS k-way |", "|---|---|---|---|---|",
             *rows]
    write_section("metis", "\n".join(lines))


if __name__ == "__main__":
    main()
