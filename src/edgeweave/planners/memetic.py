"""Block offloading for several models at once by PSO-GA and a memetic search (seed 000).

Jin, Park and Lee (MobiHoc 2022) cut every layer into pieces (``planners.pieces``), group
the pieces into blocks (``planners.multilevel``) and search which device runs each block,
to minimise the completion time of all the models; each device runs its pieces in
descending upward rank. The search is particle swarm optimisation with genetic operators
(PSO-GA), as in the authors' code: one gene per block (its device); the "velocity" is a
mutation of one gene with probability ``w = w_max - (w_max - w_min) * exp(ps / (ps - 1.01))``
(``ps`` the share of genes equal to the global best's); then a two-point crossover with the
particle's best (probability 0.9 falling to 0.2 over the loops) and with the global best
(0.4 rising to 0.9); blocks moved off devices whose memory they overflow. Unlike the
authors' all-random swarm, the first particles put every block on one device (one particle
per device), so that no plan found is slower than one device alone. It stops after
``loops`` loops or ``patience`` loops without improvement. The memetic variant adds a local
step after every loop: two random blocks in turn, each tried on every other device, the
best kept — on each particle with probability 0.5 (``local="particles"``, the authors' and
the default), or on the swarm's best particle only (``local="best"``), which on an equal
budget of fitness evaluations searches better, while the authors' step, at a fixed number
of loops, spends more evaluations and finds more (docs/planners.md). Beyond the authors',
the memetic search *polishes* the best assignment found at the end (coordinate descent: every block in
turn on its best device, two passes at most). A block may run on any device, or with
``other_sources=False`` only on its own model's source and the devices that are no model's
source (the authors' set: the request device, the helpers, the server).

Three planners, the seed's three variants: ``lo`` (layers whole, PSO-GA), ``po`` (pieces,
PSO-GA) and ``mo`` (pieces, memetic). Their options: ``pieces`` (per layer; ``lo``: 1),
``blocks`` (k per model), ``refine`` (boundary FM while uncoarsening), ``particles``,
``loops``, ``patience``, ``w_max``, ``w_min``, ``evaluations`` (a budget of fitness
evaluations, default none), ``other_sources`` (True), ``queue_transfers`` (True; False is
the authors' rule, no transfer waiting for another on a link: ``planners.fitness``) and,
for ``mo``, ``local`` (``particles``).

The fitness is a list schedule of the pieces on the cost model — each piece, in descending
rank, starts when its device is free and what it reads has arrived, each transfer booked
on its link (or shared medium, as the simulator does; the authors' model has no
contention, which a cluster of point-to-point links reproduces) — compiled
(``planners.fitness``), so that the search takes seconds. The plan's
``notes["predicted_ms"]`` is ``simulate(plan)``, which also counts shared media;
``notes["bound_ms"]`` is the workload's lower bound (``planners.bound``) and
``notes["gap"]`` how far above it the plan is.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeweave.errors import PlanError
from edgeweave.planners.bound import lower_bound_s
from edgeweave.planners.fitness import Fitness
from edgeweave.planners.multilevel import Blocks, cut_bytes, partition
from edgeweave.planners.pieces import PieceGraph, piece_graph, piece_seconds, upward_ranks
from edgeweave.planners.problem import Problem
from edgeweave.simulation import predicted_s
from edgeweave.units import Part, Plan, build_plan

DEFAULTS = {"pieces": 3, "blocks": 21, "refine": True, "particles": 50, "loops": 600,
            "patience": 50, "w_max": 0.8, "w_min": 0.2, "evaluations": None,
            "other_sources": True, "queue_transfers": True}
MEMETIC_DEFAULTS = {**DEFAULTS, "loops": 300, "local": "particles"}
LOCAL_STEPS = ("best", "particles")


@dataclass
class Search:
    """What a search found: the best assignment, its fitness, the best fitness after each
    loop (and after the polish, for the memetic search), the loops run, and how many
    assignments were evaluated."""

    best: np.ndarray
    fitness: float
    history: list[float]
    evaluations: int
    loops: int


def pso_ga(fitness: Fitness, blocks: int, repair: Callable[[np.ndarray], np.ndarray],
           rng: np.random.Generator, particles: int, loops: int, patience: int,
           w_max: float, w_min: float, memetic: bool, budget: int | None = None,
           local: str = "particles") -> Search:
    """PSO-GA over assignments of ``blocks`` genes (memetic: with the local step on the
    particles ``local`` names, and the best found polished at the end); ``budget`` stops it
    once that many assignments have been evaluated (the polish included), so that searches
    can be compared at equal cost."""
    devices, choices = fitness.devices, fitness.choices
    # every block on one device (its own source where it may not go there), for each
    # device, among the first particles: the search starts from what a single device does
    # (the authors' swarm is all random)
    seeded = [np.where(fitness.allowed[:, i], i, fitness.home) for i in range(devices)]
    swarm = np.array([repair(seeded[i]) if i < len(seeded) else
                      repair(np.array([rng.choice(c) for c in choices]))
                      for i in range(particles)])
    value = fitness(swarm)
    own_best, own_value = swarm.copy(), value.copy()
    top = int(np.argmin(value))
    best, best_value = swarm[top].copy(), float(value[top])
    history, stale, ran = [best_value], 0, 0
    for loop in range(loops):
        ran = loop + 1
        progress = loop / max(1, loops - 1)
        with_own, with_best = 0.9 - 0.7 * progress, 0.4 + 0.5 * progress
        for i in range(particles):
            same = float(np.mean(swarm[i] == best))
            w = w_max - (w_max - w_min) * math.exp(same / (same - 1.01))
            genes = swarm[i].copy()
            if rng.random() < w:
                block = rng.integers(blocks)
                genes[block] = rng.choice(choices[block])
            if rng.random() < with_own:
                genes = _two_point(genes, own_best[i], rng)
            if rng.random() < with_best:
                genes = _two_point(genes, best, rng)
            swarm[i] = repair(genes)
        value = fitness(swarm)
        if memetic:
            value = _local_step(fitness, swarm, value, repair, rng, local)
        improved = value < own_value
        own_best[improved], own_value[improved] = swarm[improved], value[improved]
        top = int(np.argmin(own_value))
        if own_value[top] < best_value - 1e-12:
            best, best_value, stale = own_best[top].copy(), float(own_value[top]), 0
        else:
            stale += 1
        history.append(best_value)
        if stale >= patience or (budget is not None and fitness.evaluations >= budget):
            break
    if memetic and (budget is None or fitness.evaluations < budget):
        best = polish(fitness, best, repair)
        best_value = min(best_value, float(fitness(best[None, :])[0]))
        history.append(best_value)
    return Search(best, best_value, history, fitness.evaluations, ran)


def polish(fitness: Fitness, genes: np.ndarray, repair, passes: int = 2) -> np.ndarray:
    """Coordinate descent: each block in turn moved to the device that finishes the
    workload soonest (every device tried at once), until a pass changes nothing."""
    genes = genes.copy()
    value = float(fitness(genes[None, :])[0])
    for _ in range(passes):
        changed = False
        for block in range(len(genes)):
            tries = _moves(fitness, genes, block, repair)
            if not tries:
                continue
            found = fitness(np.array(tries))
            pick = int(np.argmin(found))
            if found[pick] < value - 1e-12:
                genes, value, changed = tries[pick], float(found[pick]), True
        if not changed:
            break
    return genes


def _two_point(genes: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a, b = sorted(rng.choice(len(genes) + 1, 2, replace=False))
    crossed = genes.copy()
    crossed[a:b] = other[a:b]
    return crossed


def _local_step(fitness: Fitness, swarm: np.ndarray, value: np.ndarray, repair,
                rng: np.random.Generator, local: str) -> np.ndarray:
    """The chosen particles — each with probability 0.5 (``local="particles"``, the
    authors'), or the one of best value (``"best"``) — try two random blocks in turn, each
    on every other device it may use, and keep the best (all tries evaluated together)."""
    chosen = (np.flatnonzero(rng.random(len(swarm)) < 0.5) if local == "particles"
              else np.array([int(np.argmin(value))]))
    for _ in range(2):
        tries, owners = [], []
        for particle, block in zip(chosen, rng.integers(0, swarm.shape[1], len(chosen))):
            moved = _moves(fitness, swarm[particle], block, repair)
            tries += moved
            owners += [particle] * len(moved)
        if not tries:
            continue
        found = fitness(np.array(tries))
        for row in np.argsort(found, kind="stable"):  # each particle's best try first
            if found[row] < value[owners[row]]:
                swarm[owners[row]], value[owners[row]] = tries[row], found[row]
    return value


def _moves(fitness: Fitness, genes: np.ndarray, block: int, repair) -> list[np.ndarray]:
    """``genes`` with ``block`` moved to each other device it may use that has the
    memory (only these are evaluated: the budget counts evaluations)."""
    moved = []
    for device in fitness.choices[block]:
        if device != genes[block]:
            candidate = genes.copy()
            candidate[block] = device
            if np.array_equal(repair(candidate), candidate):
                moved.append(candidate)
    return moved


class Memory:
    """Repair: blocks moved off devices whose memory their layers' weights overflow."""

    def __init__(self, problem: Problem, pieces: PieceGraph, blocks: Blocks,
                 rng: np.random.Generator, allowed: np.ndarray) -> None:
        self.capacity = np.array([d.memory_bytes for d in problem.cluster.devices], float)
        self.allowed = allowed  # block x device: where a block may go
        self.layers = [{(pieces.pieces[p].graph, name) for p in members
                        for name in pieces.pieces[p].layers} for members in blocks.members()]
        self.bytes = {(g, name): problem.graphs[g][name].param_bytes
                      for layers in self.layers for g, name in layers}
        self.rng = rng
        self.needed = sum(self.bytes.values()) > self.capacity.min()

    def used(self, genes: np.ndarray) -> np.ndarray:
        """Weight bytes each device holds under ``genes``."""
        held: list[set] = [set() for _ in self.capacity]
        for block, device in enumerate(genes):
            held[device] |= self.layers[block]
        return np.array([sum(self.bytes[k] for k in layers) for layers in held])

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        if not self.needed:
            return genes
        genes = genes.copy()
        for _ in range(len(genes)):
            used = self.used(genes)
            over = np.flatnonzero(used > self.capacity)
            if not len(over):
                break
            on = np.flatnonzero(genes == over[0])
            block = int(self.rng.choice(on))
            genes[block] = int(np.argmax(np.where(self.allowed[block], self.capacity - used,
                                                  -np.inf)))
        return genes


def _offload(problem: Problem, rng: random.Random, name: str, memetic: bool) -> Plan:
    options = problem.options
    _check(name, options)
    pieces = piece_graph(problem.graphs, options["pieces"])
    graph_of = problem.graphs
    seconds = [piece_seconds(problem, graph_of[p.graph], p) for p in pieces.pieces]
    links = problem.cluster.links
    per_byte = float(np.mean([8.0 / link.bandwidth_bps for link in links])) if links else 0.0
    rank = upward_ranks(pieces, seconds, per_byte)
    weight = [float(np.mean(list(s.values()))) for s in seconds]
    blocks = partition(pieces, options["blocks"], rank, weight, options["refine"])
    order = sorted(range(len(pieces.pieces)), key=lambda p: (-rank[p], p))
    generator = np.random.default_rng(rng.getrandbits(64))
    fitness = Fitness(problem, pieces, blocks, order, seconds, options["other_sources"],
                      options["queue_transfers"])
    repair = Memory(problem, pieces, blocks, generator, fitness.allowed)
    found = pso_ga(fitness, blocks.count, repair, generator, options["particles"],
                   options["loops"], options["patience"], options["w_max"], options["w_min"],
                   memetic, options["evaluations"], options.get("local", "particles"))
    made = _plan(problem, pieces, blocks, order, found.best, name)
    notes = {"pieces": len([p for p in pieces.pieces if not p.is_input]),
             "blocks": blocks.count, "cut_bytes": cut_bytes(pieces, blocks.block_of),
             "fitness_ms": 1e3 * found.fitness, "loops": found.loops,
             "evaluations": found.evaluations,
             "convergence_ms": [round(1e3 * v, 4) for v in found.history],
             "predicted_ms": 1e3 * predicted_s(made),
             "bound_ms": 1e3 * lower_bound_s(problem)}
    notes["gap"] = notes["predicted_ms"] / notes["bound_ms"] - 1 if notes["bound_ms"] else None
    return dataclasses.replace(made, notes=notes)


def _plan(problem: Problem, pieces: PieceGraph, blocks: Blocks, order: list[int],
          genes: np.ndarray, name: str) -> Plan:
    """The plan of an assignment: each piece a unit on its block's device, each device's
    units in descending rank."""
    names = problem.cluster.names
    parts, position = [], {}
    for p in order:
        piece = pieces.pieces[p]
        if piece.is_input:
            continue
        position[p] = len(parts)
        parts.append(Part(piece.graph, piece.layers, piece.region,
                          names[int(genes[blocks.block_of[p]])]))
    by_device = {d: [i for i, part in enumerate(parts) if part.device == d] for d in names}
    return build_plan(problem.graphs, problem.cluster, parts, by_device, planner=name,
                      options=problem.options, models=problem.models, workload=problem.streams)


def _check(name: str, options) -> None:
    for key in ("pieces", "blocks", "particles", "loops", "patience"):
        value = options[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise PlanError(f"The '{key}' option of planner '{name}' must be a positive "
                            f"integer. Got {value!r} instead.")
    for key in ("refine", "other_sources", "queue_transfers"):
        if not isinstance(options[key], bool):
            raise PlanError(f"The '{key}' option of planner '{name}' must be true or false. "
                            f"Got {options[key]!r} instead.")
    if options.get("local", "particles") not in LOCAL_STEPS:
        raise PlanError(f"The 'local' option of planner '{name}' is one of "
                        f"{', '.join(LOCAL_STEPS)}. Got {options['local']!r} instead.")
    budget = options["evaluations"]
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool)
                               or budget < 1):
        raise PlanError(f"The 'evaluations' option of planner '{name}' must be a positive "
                        f"integer or None. Got {budget!r} instead.")
    w_max, w_min = options["w_max"], options["w_min"]
    if not (isinstance(w_max, int | float) and isinstance(w_min, int | float)
            and 0 <= w_min <= w_max <= 1):
        raise PlanError(f"Planner '{name}' needs 0 <= w_min <= w_max <= 1. Got w_min="
                        f"{w_min!r}, w_max={w_max!r}.")


def layer_offloading(problem: Problem, rng: random.Random) -> Plan:
    """LO: layers whole, grouped into blocks, placed by PSO-GA."""
    return _offload(problem, rng, "lo", memetic=False)


def piece_offloading(problem: Problem, rng: random.Random) -> Plan:
    """PO: pieces of layers grouped into blocks, placed by PSO-GA."""
    return _offload(problem, rng, "po", memetic=False)


def memetic_offloading(problem: Problem, rng: random.Random) -> Plan:
    """MO: pieces of layers grouped into blocks, placed by the memetic search."""
    return _offload(problem, rng, "mo", memetic=True)
