"""The Extended Johnson schedule of seed 001 (Wang, Duan and Wu), and its exact reference.

With a cut fixed, every path of a multi-path DNN is a job of three stages run in that
order — local compute on the device (p1), transmission of the cut tensor (p2), remote
compute on the server (p3) — and device, link and server each do one thing at a time.
The seed's Theorem 2 makes the best schedule a permutation of whole paths, so finding it
is the three-machine permutation flow shop: NP-hard (Theorem 1), and Extended Johnson
(Algorithm 1) is the seed's answer — optimal when stage 2 is dominated (Theorem 3), within
5/3 of optimal otherwise (Theorem 4).

Around it: the conversion of a general DAG into multi-path stretches (``convert``), the
search for each path's cut (``schedule``), an exact reference (``exact_schedule``) and the
planner (``plan``), which keeps the result only where the simulator finds it no slower
than the single-cut and all-in-one-place baselines.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgeweave.cluster import Device
from edgeweave.errors import PlanError
from edgeweave.graph import LayerGraph
from edgeweave.planners import baselines, neurosurgeon
from edgeweave.planners.problem import Problem
from edgeweave.simulation import predicted_s
from edgeweave.units import Plan, build_plan, whole

Stages = tuple[float, float, float]  # (p1, p2, p3) of one path
COARSE_CUTS = 32  # a path with more cuts than this is searched coarse to fine


def extended_johnson(paths: Sequence[Stages]) -> list[int]:
    """Algorithm 1: the order (indices into ``paths``) in which to process the paths.

    H holds the paths with p1 + p2 <= p2 + p3, sorted increasingly by p1 + p2; L the
    others, sorted decreasingly by p2 + p3; the schedule is H then L. Ties keep the
    paths' given order.
    """
    early = [i for i, (p1, p2, p3) in enumerate(paths) if p1 + p2 <= p2 + p3]
    late = [i for i, (p1, p2, p3) in enumerate(paths) if p1 + p2 > p2 + p3]
    early.sort(key=lambda i: paths[i][0] + paths[i][1])
    late.sort(key=lambda i: -(paths[i][1] + paths[i][2]))
    return early + late


def makespan(paths: Sequence[Stages], order: Sequence[int], lead_s: float = 0.0) -> float:
    """When the last path's remote compute ends, processing ``paths`` in ``order`` with
    each stage's resource doing one path at a time and every path's stages in sequence;
    ``lead_s``: the link is busy that long first (a transfer every remote path waits for)."""
    device, link, server = 0.0, lead_s, lead_s
    for i in order:
        p1, p2, p3 = paths[i]
        device += p1
        link = max(link, device) + p2
        server = max(server, link) + p3
    return server


def stage_two_dominated(paths: Sequence[Stages]) -> bool:
    """Theorem 3's condition, under which Extended Johnson is optimal:
    max(min p1, min p3) >= max p2."""
    if not paths:
        return True
    return max(min(p[0] for p in paths), min(p[2] for p in paths)) >= max(p[1] for p in paths)


def optimal_order(paths: Sequence[Stages], lead_s: float = 0.0, limit: int = 8) -> list[int]:
    """The order of least makespan, by trying every permutation (at most ``limit``
    paths: the exact reference for measuring Extended Johnson's gap)."""
    if len(paths) > limit:
        raise ValueError(f"{len(paths)} paths are too many to enumerate (limit {limit}).")
    best = min(itertools.permutations(range(len(paths))),
               key=lambda order: makespan(paths, order, lead_s))
    return list(best)


@dataclass(frozen=True)
class MultiPath:
    """One multi-path stretch of a graph: the layers up to and including the fork (empty
    when the stretch starts at model inputs), the paths from the fork to the join, and the
    layers from the join on (empty when the stretch ends at model outputs).

    A path is a sequence of layers in which each reads the one before (a path may be empty:
    an edge straight from fork to join). Paths converted from a general DAG share layers —
    seed 001's replicated nodes; ``owner`` names the one path that computes each.
    """

    head: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]
    tail: tuple[str, ...]

    @functools.cached_property
    def owner(self) -> dict[str, int]:
        """For each layer of the paths, the first path holding it: a replicated layer
        executes once, the first time (seed 001), and its cost is that path's."""
        owners: dict[str, int] = {}
        for index, path in enumerate(self.paths):
            for layer in path:
                owners.setdefault(layer, index)
        return owners

    @property
    def fork(self) -> str | None:
        """The layer whose output every path reads first (None: the paths start at inputs)."""
        return self.head[-1] if self.head else None


def convert(graph: LayerGraph, max_paths: int = 8) -> tuple[MultiPath, ...]:
    """Seed 001's graph conversion, one stretch at a time: every stretch of ``graph``
    between two consecutive cut points (layers every input-to-output path passes) that is
    not a plain chain, as a multi-path graph.

    The stretch's paths are all its fork-to-join paths, a layer on several of them
    replicated (the seed's fork and join operations). Where a stretch has more than
    ``max_paths`` of them (they multiply with every nested fork), each branch leaving the
    fork becomes one path instead: its layers in topological order. Converting stretch by
    stretch, not the whole graph, keeps the paths few — replicating every input-to-output
    path of GoogLeNet gives 4^9 of them — and loses nothing: a device-to-server cut that
    sends nothing back crosses at most one stretch (the cut point after a stretch with
    layers on the device is on the device, so is all before it).
    """
    order = graph.topological_order()
    position = {name: i for i, name in enumerate(order)}
    bounds: list[str | None] = [None, *graph.cut_points, None]
    stretches = []
    for fork, join in zip(bounds, bounds[1:]):
        low = position[fork] if fork is not None else -1
        high = position[join] if join is not None else len(order)
        if high - low > 1:
            paths = _paths(graph, fork, order[low + 1:high], max_paths)
            stretches.append(MultiPath(order[:low + 1], paths, order[high:]))
    return tuple(stretches)


def _paths(graph: LayerGraph, fork: str | None, inner: Sequence[str],
           max_paths: int) -> tuple[tuple[str, ...], ...]:
    inside = set(inner)
    following = {name: [s for s in graph.successors(name) if s in inside] for name in inner}
    # a path ends where it reaches the join (a successor outside) or a model output
    ends = {name: len(following[name]) < len(graph.successors(name))
            or not graph.successors(name) for name in inner}
    starts = [*(graph.successors(fork) if fork is not None else ()),
              *(name for name in inner if not graph.predecessors(name))]
    count: dict[str, int] = {}
    for name in reversed(inner):
        count[name] = sum(count[s] for s in following[name]) + ends[name]
    if sum(count.get(start, 1) for start in starts) > max_paths:
        return tuple(_reachable(start, following, inner) for start in starts)

    def walk(name: str) -> list[tuple[str, ...]]:
        rest = [tail for s in following[name] for tail in walk(s)] + [()] * ends[name]
        return [(name, *tail) for tail in rest]
    return tuple(path for start in starts
                 for path in (walk(start) if start in inside else [()]))


def _reachable(start: str, following: dict[str, list[str]],
               inner: Sequence[str]) -> tuple[str, ...]:
    if start not in following:
        return ()  # the fork reads straight into the join
    seen, stack = {start}, [start]
    while stack:
        for successor in following[stack.pop()]:
            if successor not in seen:
                seen.add(successor)
                stack.append(successor)
    return tuple(name for name in inner if name in seen)


@dataclass(frozen=True)
class Schedule:
    """How one stretch is processed: where each path is cut (its first ``cuts[i]`` layers
    proposed for the device, the rest for the server), the layers that end up on the device
    (``local``), the paths' stage times, their order, and the time to send the fork's
    output ahead of them (0 when no path reads it on the server)."""

    cuts: tuple[int, ...]
    local: frozenset[str]
    stages: tuple[Stages, ...]
    order: tuple[int, ...]
    lead_s: float = 0.0

    @property
    def makespan_s(self) -> float:
        """From the fork to the end of the last path's remote compute."""
        return makespan(self.stages, self.order, self.lead_s)


class Stretch:
    """One stretch of a graph to cut between ``device`` and ``server``: every layer's time on
    each and the time to send its output over the link between them."""

    def __init__(self, problem: Problem, graph: LayerGraph, parts: MultiPath, device: Device,
                 server: Device) -> None:
        self.graph, self.parts, self.device, self.server = graph, parts, device, server
        link = problem.cluster.link(device.name, server.name) if device != server else None
        layers = [*parts.head, *parts.owner, *parts.tail]
        self.on_device = {n: problem.cost.compute_s(graph, graph[n], device) for n in layers}
        self.on_server = {n: problem.cost.compute_s(graph, graph[n], server) for n in layers}
        self.send = {n: problem.cost.transfer_s(graph[n].output_bytes, link) for n in layers}
        self.inner = [n for n in graph.topological_order() if n in parts.owner]
        self.rank = {n: parts.paths[parts.owner[n]].index(n) for n in self.inner}
        self.readers = {n: graph.successors(n) for n in self.inner}
        self.inputs = {n: graph.predecessors(n) for n in self.inner}

    def lowest(self, index: int) -> int:
        """The shortest local prefix of a path: a model input stays where it arrives."""
        path = self.parts.paths[index]
        return 1 if path and self.graph[path[0]].kind == "input" else 0

    def local(self, cuts: Sequence[int]) -> frozenset[str]:
        """The stretch's layers on the device: those in their owner's local prefix whose
        inputs are all on the device too (nothing comes back from the server)."""
        owner, fork = self.parts.owner, self.parts.fork
        local: set[str] = set()
        for name in self.inner:
            if self.rank[name] < cuts[owner[name]] and all(
                    p in local or p == fork for p in self.inputs[name]):
                local.add(name)
        return frozenset(local)

    def stages(self, local: frozenset[str]) -> tuple[Stages, ...]:
        """(p1, p2, p3) per path: its owned layers' device and server times and the
        tensors it sends (those of its local layers read on the server)."""
        parts = self.parts
        totals = [[0.0, 0.0, 0.0] for _ in parts.paths]
        for name in self.inner:
            stage = totals[parts.owner[name]]
            if name in local:
                stage[0] += self.on_device[name]
                if any(s not in local for s in self.readers[name]):
                    stage[1] += self.send[name]
            else:
                stage[2] += self.on_server[name]
        return tuple((p1, p2, p3) for p1, p2, p3 in totals)

    def lead_s(self, local: frozenset[str]) -> float:
        """The fork's output, sent once before any path's transfer when the server reads
        it (the runtime sends it as soon as it exists)."""
        fork = self.parts.fork
        remote = fork is not None and any(s not in local for s in self.graph.successors(fork))
        return self.send[fork] if remote else 0.0

    def schedule(self, cuts: Sequence[int]) -> Schedule:
        """The cuts' placement, stage times and Extended Johnson order."""
        local = self.local(cuts)
        stages = self.stages(local)
        return Schedule(tuple(cuts), local, stages, tuple(extended_johnson(stages)),
                        self.lead_s(local))

    def search(self, hint: frozenset[str] = frozenset()) -> Schedule:
        """Cuts and order for the paths. The seed takes the cuts as given; we search them
        from three starts — every path remote, every path local, the cut ``hint`` (layers
        on the device, e.g. Neurosurgeon's) — changing one path's cut at a time, re-running
        Extended Johnson for each trial, while the makespan falls; each descent ends where
        no single-path change improves it, and the best end is kept."""
        paths = self.parts.paths
        lowest = [self.lowest(i) for i in range(len(paths))]
        hinted = [max(low, next((k for k, n in enumerate(path) if n not in hint), len(path)))
                  for low, path in zip(lowest, paths)]
        return min((self._descend(cuts, lowest)
                    for cuts in dict.fromkeys(map(tuple, (lowest, [len(p) for p in paths],
                                                           hinted)))),
                   key=lambda s: s.makespan_s)

    @property
    def coarse(self) -> bool:
        """Whether a path has more cuts than ``COARSE_CUTS``, so is searched coarse to fine."""
        return any(len(path) + 1 > COARSE_CUTS for path in self.parts.paths)

    def _cuts(self, index: int, low: int, current: int) -> Sequence[int]:
        """The cuts of a path to try: every one; on a path of more than ``COARSE_CUTS``
        cuts, every ``step``-th and those within a step of the current cut (each trial
        costs time linear in the stretch, and a transformer's stretch runs to hundreds of
        layers a path: ``bench/johnson_large.py``)."""
        end = len(self.parts.paths[index])
        step = math.ceil((end + 1 - low) / COARSE_CUTS)
        if step <= 1:
            return range(low, end + 1)
        near = range(max(low, current - step), min(end, current + step) + 1)
        return sorted({*range(low, end + 1, step), end, *near})

    def _descend(self, cuts: Sequence[int], lowest: Sequence[int]) -> Schedule:
        best = self.schedule(cuts)
        improved = True
        while improved:
            improved = False
            for i in range(len(self.parts.paths)):
                for k in self._cuts(i, lowest[i], best.cuts[i]):
                    trial = self.schedule([*best.cuts[:i], k, *best.cuts[i + 1:]])
                    if trial.makespan_s < best.makespan_s - 1e-12:
                        best, improved = trial, True
        return best

    def exact(self, limit: int = 200_000) -> Schedule:
        """The exact reference: every combination of cuts, each with its optimal order by
        brute force (for at most ``limit`` cut-and-order combinations)."""
        paths = self.parts.paths
        choices = [range(self.lowest(i), len(path) + 1) for i, path in enumerate(paths)]
        combinations = math.prod(map(len, choices)) * math.factorial(len(paths))
        if combinations > limit:
            raise ValueError(f"{combinations} cut-and-order combinations are too many to "
                             f"enumerate (limit {limit}).")
        candidates = []
        for cuts in itertools.product(*choices):
            local = self.local(cuts)
            stages, lead = self.stages(local), self.lead_s(local)
            candidates.append(Schedule(cuts, local, stages,
                                       tuple(optimal_order(stages, lead)), lead))
        return min(candidates, key=lambda s: s.makespan_s)

    def latency_s(self, chosen: Schedule) -> float:
        """Head on the device, the paths, tail on the server, remote outputs sent back."""
        parts = self.parts
        head = sum(self.on_device[n] for n in parts.head)
        tail = sum(self.on_server[n] for n in parts.tail)
        back = sum(self.send[n] for n in self.graph.outputs
                   if n in parts.tail or (n in parts.owner and n not in chosen.local))
        return head + chosen.makespan_s + tail + back

    def choice(self, chosen: Schedule) -> GraphChoice:
        """The graph placed by a schedule of this stretch: before it on the device, after it
        on the server, its paths' layers in Extended Johnson order, each where it is first
        met (dependencies between replicated layers may still move one later)."""
        parts, device, server = self.parts, self.device.name, self.server.name
        placement = {n: device for n in parts.head} | {n: server for n in parts.tail}
        placement |= {n: device if n in chosen.local else server for n in parts.owner}
        sequence = [*parts.head]
        for where in (device, server):
            sequence += [n for i in chosen.order for n in parts.paths[i]
                         if parts.owner[n] == i and placement[n] == where]
        sequence += parts.tail
        return GraphChoice(placement, tuple(sequence), parts, chosen, self.latency_s(chosen),
                           self.coarse)


@dataclass(frozen=True)
class GraphChoice:
    """Where one graph's layers go and the order each device should compute them in, as
    far as dependencies allow; the stretch and schedule behind it (None for Neurosurgeon's
    single cut) and the latency the stage times predict."""

    placement: dict[str, str]
    sequence: tuple[str, ...]
    stretch: MultiPath | None
    schedule: Schedule | None
    latency_s: float
    coarse: bool = False  # its stretch's cuts searched coarse to fine (``Stretch._cuts``)


def _sequences(graph: LayerGraph, placement: dict[str, str],
               sequence: Sequence[str]) -> dict[str, list[str]]:
    """Each device's layers in the order of ``sequence`` as far as dependencies allow."""
    import networkx as nx

    rank = {name: i for i, name in enumerate(sequence)}
    digraph = graph.to_networkx()
    order: dict[str, list[str]] = {}
    for device in dict.fromkeys(placement.values()):
        mine = digraph.subgraph(n for n, d in placement.items() if d == device)
        order[device] = list(nx.lexicographical_topological_sort(mine, key=rank.__getitem__))
    return order


def single_cut(problem: Problem, graph: LayerGraph) -> GraphChoice:
    """Neurosurgeon's best single cut between the input device and the fastest device."""
    device, server = problem.source_of(graph), problem.fastest()
    on_device = neurosurgeon.best_cut(problem, graph, device, server)
    placement = {n: device.name if n in on_device else server.name
                 for n in graph.topological_order()}
    return GraphChoice(placement, graph.topological_order(), None, None,
                       neurosurgeon.cut_latency(problem, graph, on_device, device, server))


def plan_graph(problem: Problem, graph: LayerGraph, max_paths: int = 8,
               single: GraphChoice | None = None) -> GraphChoice:
    """Seed 001 on one graph, between the input device and the fastest device: each stretch
    of the converted graph searched (``Stretch.search``, hinted with the ``single`` cut)
    and that single cut itself (a line's only choice, and the best where cutting inside a
    stretch does not pay); the one the stage times predict fastest is kept."""
    device, server = problem.source_of(graph), problem.fastest()
    single = single or single_cut(problem, graph)
    on_device = frozenset(n for n, d in single.placement.items() if d == device.name)
    choices = [single]
    for parts in convert(graph, max_paths):
        stretch = Stretch(problem, graph, parts, device, server)
        choices.append(stretch.choice(stretch.search(on_device)))
    return min(choices, key=lambda c: c.latency_s)  # ties: the single cut


def build(problem: Problem, choices: dict[str, GraphChoice]) -> Plan:
    """The plan of every graph placed and ordered by its choice."""
    parts, order = [], {}
    for name, graph in problem.graphs.items():
        choice = choices[name]
        for device, layers in _sequences(graph, choice.placement, choice.sequence).items():
            for layer in layers:
                if graph[layer].kind != "input":
                    order.setdefault(device, []).append(len(parts))
                    parts.append(whole(graph, layer, device))
    return build_plan(problem.graphs, problem.cluster, parts, order, planner="johnson",
                      options=problem.options, models=problem.models, workload=problem.streams)


def plan(problem: Problem, rng: random.Random) -> Plan:
    """Seed 001's method on every model of the problem, kept only where the simulator finds
    it at least as fast as all on the device, all on the server and Neurosurgeon's cut: the
    plan is never worse than those. ``notes`` says which won and, per model, the stretch,
    cuts, order, stage times and whether Theorem 3 (Extended Johnson optimal) holds."""
    max_paths = problem.options["max_paths"]
    if not isinstance(max_paths, int) or isinstance(max_paths, bool) or max_paths < 1:
        raise PlanError(f"The 'max_paths' option of planner 'johnson' must be an integer of "
                        f"at least 1. Got {max_paths!r} instead.")
    singles = {name: single_cut(problem, graph) for name, graph in problem.graphs.items()}
    choices = {name: plan_graph(problem, graph, max_paths, singles[name])
               for name, graph in problem.graphs.items()}
    candidates = {
        "extended-johnson": build(problem, choices),
        "neurosurgeon": build(problem, singles),
        "local": baselines.local(problem, rng),
        "remote": baselines.remote(problem, rng),
    }
    simulated = {name: predicted_s(made) for name, made in candidates.items()}
    winner = min(candidates, key=simulated.__getitem__)  # ties: the first, Extended Johnson
    reports = {name: _report(choice) for name, choice in choices.items()}
    notes = {"chosen": winner, "summary": _summary(winner, reports),
             "simulated_ms": {k: v * 1e3 for k, v in simulated.items()}, "models": reports}
    return dataclasses.replace(candidates[winner], planner="johnson", notes=notes)


def _summary(winner: str, reports: dict[str, dict[str, Any]]) -> str:
    if winner != "extended-johnson":
        return f"{winner} was fastest in the simulator"
    parts = []
    for name, report in reports.items():
        if report.get("single_cut"):
            parts.append(f"{name}: the best single cut")
        else:
            theorem = "holds" if report["theorem3"] else "fails"
            parts.append(f"{name}: {report['paths']} paths from {report['fork'] or 'the inputs'}"
                         f", cuts {report['cuts']}, order {report['order']}, Theorem 3 {theorem}")
    return "; ".join(parts)


def _report(choice: GraphChoice) -> dict[str, Any]:
    if choice.stretch is None or choice.schedule is None:
        return {"single_cut": True, "estimated_ms": choice.latency_s * 1e3}
    parts, chosen = choice.stretch, choice.schedule
    return {"fork": parts.fork, "join": parts.tail[0] if parts.tail else None,
            "paths": len(parts.paths), "cuts": list(chosen.cuts), "order": list(chosen.order),
            "stages_ms": [[t * 1e3 for t in stage] for stage in chosen.stages],
            "fork_sent_ms": chosen.lead_s * 1e3,
            "makespan_ms": chosen.makespan_s * 1e3, "estimated_ms": choice.latency_s * 1e3,
            "theorem3": stage_two_dominated(chosen.stages),
            **({"search": f"coarse to fine: a path of more than {COARSE_CUTS} cuts tries every "
                          "step-th cut and those within a step of its best, not every cut"}
               if choice.coarse else {})}
