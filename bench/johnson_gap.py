"""How far seed 001's cut search and Extended Johnson order are from the optimum.

For every stretch of every zoo model whose cut-and-order combinations can be enumerated
(at most 200,000), on the seed's testbed (rpi4b + edge-server) over 3G, 4G and WiFi:
the makespan of our search (``Stretch.search``, hinted with the best single cut as the
planner does) and of Extended Johnson's order on the
optimum's cuts, each over the exact optimum (``Stretch.exact``), and how often Theorem 3
holds. Also the planning time of ``johnson`` per model. Every figure comes from the cost
model (no timing but the planning time).

Writes the "johnson" section of docs/benchmarks.md. Run: .venv/bin/python bench/johnson_gap.py
"""

from __future__ import annotations

import platform
import statistics
import time

import edgeweave as ew
from edgeweave.cost import CostModel
from edgeweave.planners.johnson import Stretch, convert, single_cut, stage_two_dominated
from edgeweave.planners.problem import Problem
from sections import write_section

MODELS = ("two_branch", "siamese", "multistream", "alexnet_p", "googlenet", "resnet18",
          "resnet50", "mobilenet_v2", "inception_resnet_v2", "yolov5s")
NETWORKS = ("3g", "4g", "wifi")


def main() -> None:
    lines = ["Cost-model figures (planning time measured on the development VM, "
             f"{platform.machine()}, 2 cores); rpi4b + edge-server.", "",
             "| model | network | stretches enumerated | search / optimum: mean, max | "
             "EJ order on optimal cuts / optimum: max | Theorem 3 holds | planning ms |",
             "|---|---|---|---|---|---|---|"]
    for name in MODELS:
        module, example = ew.models.get(name)
        graph = ew.trace(module, example, name=name)
        stretches = convert(graph)
        for network in NETWORKS:
            cluster = ew.Cluster.load(f"rpi4b+edge-server@{network}")
            problem = Problem({name: graph}, cluster, CostModel.for_cluster(cluster),
                              {"max_paths": 8}, {})
            search_gaps, order_gaps, dominated = [], [], 0
            single = single_cut(problem, graph)
            hint = frozenset(n for n, d in single.placement.items() if d == problem.source.name)
            for parts in stretches:
                stretch = Stretch(problem, graph, parts, problem.source, problem.fastest())
                try:
                    exact = stretch.exact()
                except ValueError:  # too many combinations to enumerate
                    continue
                ours = stretch.search(hint)  # as the planner searches
                search_gaps.append(ours.makespan_s / exact.makespan_s)
                order_gaps.append(stretch.schedule(exact.cuts).makespan_s / exact.makespan_s)
                dominated += stage_two_dominated(ours.stages)
            start = time.perf_counter()
            ew.plan(graph, cluster, planner="johnson")
            planning_ms = (time.perf_counter() - start) * 1e3
            gaps = (f"{statistics.mean(search_gaps):.4f}, {max(search_gaps):.4f}"
                    if search_gaps else "-")
            order = f"{max(order_gaps):.4f}" if order_gaps else "-"
            lines.append(f"| {name} | {network} | {len(search_gaps)} of {len(stretches)} | "
                         f"{gaps} | {order} | {dominated} of {len(search_gaps)} | "
                         f"{planning_ms:.0f} |")
            print(lines[-1], flush=True)
    write_section("johnson", "\n".join(lines))


if __name__ == "__main__":
    main()
