"""Seed 000's experiment (Jin, Park and Lee, MobiHoc 2022 poster): several DNNs per
request — AlexNet, GoogLeNet and ResNet-50, repeated — each model's input arriving at its
own Raspberry Pi 4B, helped by D devices (Pis and Jetson TX2s) and an edge server over
100 Mibit/s links; layer-based PSO-GA offloading (LO), piece-based PSO-GA (PO) and the
piece-based memetic search (MO) against the number of models N.

The authors' device model, from their code (yhjh5302/Multiple-DNN-Scheduling): a layer's
time is its workload times the device's intensity for the model over its frequency, which
gives the whole-model times quoted in issue 13 (``WHOLE_S``). Their per-layer workloads
are not ours (our layers are torch.fx's), so each device's profile spreads the model's
whole time over our layers in proportion to their FLOPs: the totals are the authors',
the split between layers our graph's. Inputs are 224x224x3 bytes (uint8, turned into
floats by the first layer, as the authors' input size assumes). Links: 100 Mibit/s
between any two devices, no latency, no contention (point-to-point links). Device set:
every block may go to any device — the N request Pis, the D helpers and the edge server
(the planners' default, ``other_sources=True``); the authors' blocks see their own request
Pi, the helpers and the server (their local search maps device 0 to each block's own
request Pi), which ``other_sources=False`` reproduces: measured, it is worse here (the
page says by how much).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgeweave import models
from edgeweave.cluster import Cluster
from edgeweave.experiments.zoo import Traced
from edgeweave.graph import LayerGraph, trace
from edgeweave.planners import plan
from edgeweave.planners.bound import lower_bound_s
from edgeweave.planners.problem import Problem
from edgeweave.cost import CostModel
from edgeweave.simulation import predicted_s
from edgeweave.units import Stream
from edgeweave.runtime import run_inline

MODELS = ("alexnet", "googlenet", "resnet50")
# whole-model seconds per device kind, (AlexNet, GoogLeNet, ResNet-50): workload x
# intensity / frequency in the authors' code, e.g. the Pi's (615, 1568, 600) at 1.5e12
WHOLE_S = {"rpi4b": (0.477, 0.602, 0.498), "jetson-tx2": (0.175, 0.222, 0.187),
           "edge-server": (0.091, 0.112, 0.097)}
HELPERS = ("rpi4b", "rpi4b", "jetson-tx2", "rpi4b", "rpi4b", "jetson-tx2")
LINK_BPS = 100 * 2 ** 20
COUNTS = (3, 4, 5, 6, 7, 8, 9)
DEVICES = (3, 6)
PLANNERS = {"LO": "lo", "PO": "po", "MO": "mo"}
# MO with one thing changed, run where the poster has figures (N = 3 and 9): what the gap
# to the poster is made of; the last is the authors' own transfer rule, so its figure is
# the search's fitness under that rule, not ``simulate(plan)``
VARIANTS = {"the authors' device set": {"other_sources": False},
            "local step on the best particle": {"local": "best"},
            "k = 8 blocks per model": {"blocks": 8},
            "the authors' transfer rule": {"queue_transfers": False}}
RULE = "the authors' transfer rule"
# the poster's plot, seconds, at N = 3 and N = 9
POSTER = {3: {"LO": (0.233, 0.685), "PO": (0.203, 0.547), "MO": (0.195, 0.425)},
          6: {"LO": (0.218, 0.663), "PO": (0.175, 0.438), "MO": (0.168, 0.356)}}
POSTER_GAINS = {3: {"LO": (0.162, 0.331), "PO": (0.094, 0.206)},
                6: {"LO": (0.262, 0.406), "PO": (0.084, 0.182)}}


def poster_s(helpers: int, count: int, method: str) -> float | None:
    """The poster's figure for a method, where it has one (N = 3 and N = 9)."""
    figures = POSTER.get(helpers, {}).get(method)
    return figures[(3, 9).index(count)] if figures and count in (3, 9) else None


# the authors' code on a 2-core machine, N = 3, D = 3, one run each: seconds, search time
AUTHORS_RUN = {"LO": (0.261, 160.0), "PO": (0.203, 1500.0), "MO": (0.204, 1500.0)}


SETTING = (
    "AlexNet, GoogLeNet and ResNet-50, repeated (N models), each model's input on its own "
    "Raspberry Pi 4B, helped by D devices (Pi, Pi, TX2, Pi, Pi, TX2: D = 3 the first three) "
    "and an edge server, every two devices joined by their own 100 Mibit/s link with no "
    "latency and no contention; inputs 224x224x3 bytes (uint8, made floats by the first "
    "layer). The authors' device model (whole-model seconds: Pi 0.477 / 0.602 / 0.498, TX2 "
    "0.175 / 0.222 / 0.187, edge server 0.091 / 0.112 / 0.097, from workload x intensity / "
    "frequency in their code) is each device's profile, the model's whole time spread over "
    "our layers in proportion to their FLOPs. Device set: every block may go to any device "
    "(the N request Pis, the D helpers, the server: `other_sources=True`, the default); the "
    "authors' blocks see their own request Pi, the helpers and the server. LO: `planner=\"lo\"` (whole layers, PSO-GA); PO: "
    "`\"po\"` (3 pieces per layer, PSO-GA); MO: `\"mo\"` (3 pieces, memetic, the authors' local step "
    "on each particle: `local=\"particles\"`, the default); 21 blocks per model, "
    "boundary FM on, default search settings (50 particles; 600 loops, MO 300; stop after "
    "50 without improvement).")


class FromBytes(torch.nn.Module):
    """A model fed 8-bit pixels, as the authors' inputs are."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.float() / 255.0)


def load_models() -> dict[str, Traced]:
    """The three models with byte inputs (seeded weights and pixels)."""
    loaded = {}
    generator = torch.Generator().manual_seed(0)
    for name in MODELS:
        module, example = models.get(name)
        pixels = torch.randint(0, 256, tuple(example.shape), generator=generator,
                               dtype=torch.uint8)
        wrapped = FromBytes(module).eval()
        with torch.no_grad():
            expected = wrapped(pixels)
        loaded[name] = Traced((pixels,), trace(wrapped, pixels, name=name), (expected,),
                              wrapped)
    return loaded


def write_profiles(loaded: dict[str, Traced], directory: Path) -> dict[str, str]:
    """One profile file per device kind, the authors' whole-model times spread over our
    layers by FLOPs; the path of each."""
    paths = {}
    for kind, whole in WHOLE_S.items():
        entries = {}
        for index, name in enumerate(MODELS):
            graph = loaded[name].graph
            total = sum(layer.flops for layer in graph) or 1
            entries[name] = {"fingerprint": graph.fingerprint, "host": "jin2022 device model",
                             "threads": 1, "repeats": 1,
                             "layer_s": {layer.name: whole[index] * layer.flops / total
                                         for layer in graph}}
        path = directory / f"{kind}.json"
        path.write_text(json.dumps({"models": entries}))
        paths[kind] = str(path)
    return paths


def cluster(count: int, helpers: int, profiles: dict[str, str]) -> Cluster:
    """``count`` request Pis, the first ``helpers`` helpers and the edge server, every pair
    joined by its own 100 Mibit/s link."""
    kinds = [("request", "rpi4b")] * count + [("helper", k) for k in HELPERS[:helpers]] + [
        ("edge", "edge-server")]
    devices, seen = [], {}
    for role, kind in kinds:
        seen[role] = seen.get(role, -1) + 1
        devices.append({"name": f"{role}-{seen[role]}" if role != "edge" else "edge-server",
                        "preset": kind, "profile": profiles[kind], "threads": 1})
    return Cluster.load({"name": f"jin2022-N{count}-D{helpers}", "devices": devices,
                         "network": {"bandwidth_bps": LINK_BPS, "latency_s": 0.0}})


def workload(loaded: dict[str, Traced], count: int) -> list[LayerGraph]:
    """The first ``count`` of AlexNet, GoogLeNet, ResNet-50 repeated, each named apart."""
    return [dataclasses.replace(loaded[MODELS[i % 3]].graph, name=f"{MODELS[i % 3]}-{i}")
            for i in range(count)]


@dataclass(frozen=True)
class Row:
    """One method on one workload: completion seconds and planning seconds per seed."""

    helpers: int
    count: int
    method: str
    seconds: tuple[float, ...]
    planning_s: tuple[float, ...]
    bound_s: float

    @property
    def mean(self) -> float:
        """Mean completion time over the seeds."""
        return statistics.mean(self.seconds)

    @property
    def text(self) -> str:
        """``mean ± spread ms``, for a table."""
        return f"{1e3 * self.mean:.0f} ± {1e3 * self.spread:.0f} ms"

    @property
    def spread(self) -> float:
        """Standard deviation over the seeds (0 for one)."""
        return statistics.stdev(self.seconds) if len(self.seconds) > 1 else 0.0


@dataclass(frozen=True)
class Result:
    """The reproduced figure, the convergence curves and the preset table."""

    rows: tuple[Row, ...]
    curves: dict[str, tuple[float, ...]]
    evaluations: dict[str, int]
    presets: tuple[tuple[str, str, float], ...]  # (network, planner, seconds)
    seeds: int
    title: str = "Seed 000: LO / PO / MO completion time against the number of models"
    figure: str = field(default="jin2022-convergence.png")

    def find(self, helpers: int, count: int, method: str) -> Row:
        """The row of one method on one workload."""
        return next(r for r in self.rows if (r.helpers, r.count, r.method) ==
                    (helpers, count, method))

    def to_dict(self) -> list[dict[str, object]]:
        """The rows as JSON values."""
        return [{"D": r.helpers, "N": r.count, "method": r.method, "mean_s": r.mean,
                 "spread_s": r.spread, "seconds": list(r.seconds),
                 "planning_s": list(r.planning_s), "bound_s": r.bound_s} for r in self.rows]

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Columns and rows for a terminal."""
        columns = ["D", "N", *PLANNERS]
        counts = sorted({r.count for r in self.rows})
        rows = [[str(d), str(n), *(f"{1e3 * self.find(d, n, m).mean:.0f} ms" for m in PLANNERS)]
                for d in sorted({r.helpers for r in self.rows}) for n in counts]
        return columns, rows

    def write(self, path: Path) -> None:
        """The page, and the convergence figure beside it."""
        path.write_text(self.markdown())
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 3.5))
        for method, curve in self.curves.items():
            axes.plot(range(len(curve)), [1e3 * v for v in curve],
                      label=f"{method} ({self.evaluations[method]} evaluations)")
        axes.set_xlabel("loop")
        axes.set_ylabel("best fitness (ms)")
        axes.set_title("Convergence, N = 3, D = 3, seed 0")
        axes.legend()
        figure.tight_layout()
        figure.savefig(path.parent / self.figure, dpi=110)
        plt.close(figure)

    def markdown(self) -> str:
        """The reproduction page."""
        helpers = sorted({r.helpers for r in self.rows})
        counts = sorted({r.count for r in self.rows})
        lines = ["# Reproduction: seed 000 (Jin, Park and Lee), several DNNs at once", "",
                 f"Generated by `edgeweave reproduce jin2022`. {SETTING}", "",
                 f"Each figure of ours is `simulate(plan)` of the plan found, one frame of "
                 f"every model, mean ± standard deviation over {self.seeds} seeds; the "
                 "plans of N = 3, D = 3 (seed 0) are checked against every model's own "
                 "output. Bound: the workload's lower bound (`planners.bound`); gap: MO's "
                 "mean over it.", ""]
        for d in helpers:
            lines += [f"## D = {d}", "",
                      "| N | LO | PO | MO | the poster's LO / PO / MO | bound | MO's gap | "
                      "planning time LO / PO / MO |", "|---|---|---|---|---|---|---|---|"]
            for n in counts:
                cells = [self.find(d, n, m).text for m in PLANNERS]
                poster = " / ".join(f"{1e3 * poster_s(d, n, m):.0f}" for m in PLANNERS) + \
                    " ms" if poster_s(d, n, "MO") else "—"
                mo = self.find(d, n, "MO")
                times = " / ".join(f"{statistics.mean(self.find(d, n, m).planning_s):.1f}"
                                   for m in PLANNERS) + " s"
                lines.append(f"| {n} | {' | '.join(cells)} | {poster} | "
                             f"{1e3 * mo.bound_s:.0f} ms | {mo.mean / mo.bound_s - 1:+.0%} | "
                             f"{times} |")
            gains = {m: [1 - self.find(d, n, "MO").mean / self.find(d, n, m).mean
                         for n in counts] for m in ("LO", "PO")}
            seed = POSTER_GAINS.get(d, {})
            lines += ["", f"MO over LO: {min(gains['LO']):.1%} to {max(gains['LO']):.1%} "
                          f"(the poster: {seed['LO'][0]:.1%} to {seed['LO'][1]:.1%}); MO over "
                          f"PO: {min(gains['PO']):.1%} to {max(gains['PO']):.1%} (the poster: "
                          f"{seed['PO'][0]:.1%} to {seed['PO'][1]:.1%}).", ""]
            if d in POSTER:
                over = [(n, self.find(d, n, "MO").mean / poster_s(d, n, "MO") - 1)
                        for n in (3, 9) if n in counts]
                lines += ["MO's mean against the poster's: " + ", ".join(
                    f"{o:+.0%} at N = {n}" for n, o in over) + ".", ""]
        lines += self._gap_section()
        authors = ", ".join(f"{m} {v[0]:.3f} s in {v[1]:.0f} s of search"
                            for m, v in AUTHORS_RUN.items())
        lines += ["## Beside the authors' code", "",
                  f"The authors' code on a 2-core machine (N = 3, D = 3, one run each): "
                  f"{authors}. Here ({platform.machine()}, {os.cpu_count()} cores, two workloads "
                  "planned at a time; N = 3, D = 3, mean over the seeds): " + ", ".join(
                      f"{m} {self.find(3, 3, m).mean:.3f} s in "
                      f"{statistics.mean(self.find(3, 3, m).planning_s):.1f} s"
                      for m in PLANNERS if (3, 3) in {(r.helpers, r.count) for r in self.rows})
                  + ".", "",
                  f"![convergence]({self.figure})", "",
                  "## The same workload on the preset devices", "",
                  "N = 3 (AlexNet, GoogLeNet, ResNet-50, float inputs) on "
                  f"`{PRESET_CLUSTER}` over each network, every planner; each model's input on "
                  "its own Pi, for every planner. Simulated, one frame of every model.", "",
                  "| planner | " + " | ".join(PRESET_NETWORKS) + " |",
                  "|---|" + "---|" * len(PRESET_NETWORKS)]
        planners = list(dict.fromkeys(p for _, p, _ in self.presets))
        for name in planners:
            cells = [f"{1e3 * s:.0f} ms" for net in PRESET_NETWORKS
                     for _, p, s in [x for x in self.presets if x[0] == net and x[1] == name]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def _gap_section(self) -> list[str]:
        """MO's variants beside MO and the poster, where both have figures."""
        points = sorted({(r.helpers, r.count) for r in self.rows if r.method in VARIANTS})
        lines = ["## Where MO misses the poster", "", GAP_INTRO, "",
                 "| D | N | MO | " + " | ".join(VARIANTS) + " | the poster's MO |",
                 "|---|---|---|" + "---|" * len(VARIANTS) + "---|"]
        for d, n in points:
            cells = [self.find(d, n, m).text for m in ("MO", *VARIANTS)]
            target = poster_s(d, n, "MO")
            mark = f"{1e3 * target:.0f} ms" if target else "—"
            lines.append(f"| {d} | {n} | {' | '.join(cells)} | {mark} |")
        lines += [""]
        for d, n in points:
            target = poster_s(d, n, "MO")
            if target is None:
                continue
            best = min(("MO", *VARIANTS), key=lambda m: self.find(d, n, m).mean)
            lines.append(f"- D = {d}, N = {n}: closest to the poster is {best} "
                         f"({1e3 * self.find(d, n, best).mean:.0f} ms, "
                         f"{self.find(d, n, best).mean / target - 1:+.0%} against "
                         f"{1e3 * target:.0f} ms).")
        return lines + ["", GAP_CAUSES, ""]


GAP_INTRO = (
    "Each column after MO changes one thing from MO's defaults, over the same seeds: the "
    "authors' device set (`other_sources=False`: a block on its own request Pi, the helpers "
    "or the server); the memetic step on the swarm's best particle only (`local=\"best\"`); "
    "fewer, larger blocks (`blocks=8`: our torch.fx graphs have more and smaller layers than "
    "the authors' lists, so 21 blocks per model cut the work finer than theirs); and the "
    "authors' transfer rule (`queue_transfers=False`, their `cpplib.cpp` ready time: every "
    "transfer at the full rate of its link from its producer's finish, none waiting for "
    "another on the same link) — that column is the search's own fitness under the rule, as "
    "the authors' figures are, since the simulator queues transfers on a link.")
GAP_CAUSES = (
    "What no column isolates is the per-layer spread of the whole-model times: ours follows "
    "FLOPs over our layers, the authors' their workload formula over theirs, which moves "
    "where a layer is worth cutting into pieces. The authors' own code, run on this setting "
    "(N = 3, D = 3), found MO 0.204 s: 5% above its own poster's 0.195 s.")


PRESET_CLUSTER = "rpi4b*3+jetson-tx2+edge-server"
PRESET_NETWORKS = ("wifi", "ethernet")


def reproduce(progress: Callable[[str], None] | None = None,
              counts: Sequence[int] = COUNTS, helpers: Sequence[int] = DEVICES,
              seeds: int = 10, presets: bool = True, workers: int | None = None) -> Result:
    """LO, PO and MO on every workload, ``seeds`` seeds each, and MO's ``VARIANTS`` where
    the poster has figures; the workloads spread over ``workers`` processes (default: one
    per core, two at most: planning times are wall clock); the first workload's seed-0 plans
    checked against the models; the preset table."""
    say = progress or (lambda step: None)
    jobs = [(d, n, seeds, (d, n) == (helpers[0], counts[0]), n in (3, 9))
            for d in helpers for n in counts]
    workers = workers or min(2, os.cpu_count() or 1)
    rows, curves, evaluations = [], {}, {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for done, (found, curve, counted) in enumerate(pool.map(_workload, jobs), 1):
            say(f"{done} of {len(jobs)} workloads planned")
            rows += found
            curves.update(curve)
            evaluations.update(counted)
    table = _presets(say) if presets else ()
    return Result(tuple(rows), curves, evaluations, table, seeds)


def _workload(job: tuple[int, int, int, bool, bool]):
    """One workload (D helpers, N models): each method's rows (and MO's variants' when
    ``variants``); when ``first``, its plans checked and its seed-0 convergence kept."""
    helpers, count, seeds, first, variants = job
    loaded = load_models()
    methods = {m: (planner, {}) for m, planner in PLANNERS.items()}
    if variants:
        methods.update({name: ("mo", options) for name, options in VARIANTS.items()})
    rows, curves, evaluations = [], {}, {}
    with tempfile.TemporaryDirectory() as directory:
        where = cluster(count, helpers, write_profiles(loaded, Path(directory)))
        graphs = workload(loaded, count)
        sources = {g.name: f"request-{i}" for i, g in enumerate(graphs)}
        bound = lower_bound_s(Problem({g.name: g for g in graphs}, where,
                                      CostModel.for_cluster(where), {}, {},
                                      {m: Stream(device) for m, device in sources.items()}))
        for method, (planner, options) in methods.items():
            seconds, planning = [], []
            for seed in range(seeds):
                start = time.perf_counter()
                made = plan(graphs, where, planner=planner, seed=seed, sources=sources,
                            **options)
                planning.append(time.perf_counter() - start)
                figure = "fitness_ms" if method == RULE else "predicted_ms"
                seconds.append(made.notes[figure] / 1e3)
                if seed == 0 and first and method in PLANNERS:
                    _check(made, loaded, graphs)
                    curves[method] = tuple(v / 1e3 for v in made.notes["convergence_ms"])
                    evaluations[method] = made.notes["evaluations"]
            rows.append(Row(helpers, count, method, tuple(seconds), tuple(planning), bound))
    return rows, curves, evaluations


def _check(made, loaded: dict[str, Traced], graphs: Sequence[LayerGraph]) -> None:
    """Raise unless the plan's inline outputs equal every model's own."""
    of = {g.name: loaded[g.name.rsplit("-", 1)[0]] for g in graphs}
    outputs = run_inline(made, {name: model.inputs for name, model in of.items()})
    for name, model in of.items():
        model.check_output(outputs[name])


def _presets(say: Callable[[str], None]) -> tuple[tuple[str, str, float], ...]:
    from edgeweave.experiments.zoo import traced
    from edgeweave.planners import PLANNERS as ALL

    graphs = [traced(name).graph for name in MODELS]
    found = []
    for network in PRESET_NETWORKS:
        where = Cluster.load(f"{PRESET_CLUSTER}@{network}")
        sources = {g.name: where.names[i] for i, g in enumerate(graphs)}
        for name in ALL:
            say(f"presets @{network}: {name}")
            made = plan(graphs, where, planner=name, sources=sources)
            found.append((network, name, predicted_s(made)))
    return tuple(found)
