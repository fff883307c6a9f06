"""The two trivial baselines: everything on the device where inputs arrive, or everything
sent to the fastest device (seed 001's LO and RO)."""

from __future__ import annotations

import random

from edgeweave.planners.problem import Problem
from edgeweave.units import Plan, build_plan, whole


def _all_on(problem: Problem, device: str, name: str) -> Plan:
    parts = [whole(g, layer, device) for g in problem.graphs.values() for layer in problem.layers(g)]
    return build_plan(problem.graphs, problem.cluster, parts, planner=name,
                      options=problem.options, models=problem.models)


def local(problem: Problem, rng: random.Random) -> Plan:
    """Every layer on the first device, where the inputs arrive."""
    return _all_on(problem, problem.source.name, "local")


def remote(problem: Problem, rng: random.Random) -> Plan:
    """The inputs sent to the fastest device, every layer computed there."""
    return _all_on(problem, problem.fastest().name, "remote")
