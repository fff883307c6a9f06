"""The two trivial baselines: everything on the device where inputs arrive, or everything
sent to the fastest device (seed 001's LO and RO)."""

from __future__ import annotations

import random
from collections.abc import Callable

from edgeweave.graph import LayerGraph
from edgeweave.planners.problem import Problem
from edgeweave.units import Plan, build_plan, whole


def _all_on(problem: Problem, device: Callable[[LayerGraph], str], name: str) -> Plan:
    parts = [whole(g, layer, device(g)) for g in problem.graphs.values()
             for layer in problem.layers(g)]
    return build_plan(problem.graphs, problem.cluster, parts, planner=name,
                      options=problem.options, models=problem.models, workload=problem.streams)


def local(problem: Problem, rng: random.Random) -> Plan:
    """Every layer of each model on its source, where its inputs arrive."""
    return _all_on(problem, lambda g: problem.source_of(g).name, "local")


def remote(problem: Problem, rng: random.Random) -> Plan:
    """The inputs sent to the fastest device, every layer computed there."""
    fastest = problem.fastest().name
    return _all_on(problem, lambda g: fastest, "remote")
