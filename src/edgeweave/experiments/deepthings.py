"""Seed 003's experiment (DeepThings): YOLOv2's first 16 layers at 608x608 fused into
tiles on 1 to 6 Raspberry Pi 3 over WiFi with a gateway, beside the seed's figures.

Simulated for the preset devices: the redundant computation of overlapping tiles,
communication per frame, memory per device and single-frame latency, for tiles fixed to
devices by the plan (FTP, with and without data reuse), stolen at run time, with and
without reuse (FTP-WST-S, FTP-WST), shared out by the gateway (FTP-WSH), and for MoDNN's
layer-based partition (BODP, planner ``bodp``: every layer gathered on the gateway).
Several cameras at once (each its own source, ``plan(..., sources=...)``): latency and
throughput of every mode but the plain reuse one as the cameras grow, simulated. Really
run on this machine's local workers (one torch thread each): the same modes with 1 to 3
edge workers and a gateway, measured beside plain ``module(x)`` and beside the prediction
of a cluster calibrated for them.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeweave.cluster import Cluster
from edgeweave.experiments.zoo import traced
from edgeweave.planners import plan
from edgeweave.simulation import simulate
from edgeweave.units import Plan, footprints

MODEL = "yolov2_16"
GRIDS = (2, 3, 4, 5)
DEVICE_COUNTS = (1, 2, 3, 4, 5, 6)
GATEWAY = "edge-server"
# the seed's figures (slides: "Memory Footprints", "Latency for single frame")
SEED_REDUNDANCY = {3: 1.53, 5: 2.2}  # issue 12's reading of the authors' code
SEED_MEMORY_CUT = {3: 0.69, 5: 0.79}  # FTP against layer-based partitioning
SEED_5X5_OVER_3X3 = 0.43  # latency increase from 3x3 to 5x5 (average)
SEED_REUSE_CUT = {3: 0.16, 5: 0.33}  # latency reduction by reuse management
# how the layers are placed — (planner, options): tiles fixed by the plan (with or without
# reuse), stolen at run time, shared out by the gateway; or MoDNN's bands, every layer
# gathered on the gateway. In every mode the gateway computes none of the 16 layers.
MODES = {"FTP": ("deepthings", {}), "FTP + reuse": ("deepthings", {"reuse": True}),
         "FTP-WST": ("deepthings", {"steal": True}),
         "FTP-WST-S": ("deepthings", {"steal": True, "reuse": True}),
         "FTP-WST-S, fallback": ("deepthings", {"steal": True, "reuse": True,
                                                "fallback": True}),
         "FTP-WSH": ("deepthings", {"share": True}), "MoDNN": ("bodp", {})}
RUN_MODES = ("FTP", "FTP-WST", "FTP-WST-S", "FTP-WSH", "MoDNN")  # cameras and real runs
# the seed: "Max latency increased 6.1x, 6.0x for FTP-WSH and MoDNN, 4.2x and 3.1x for
# FTP-WST and FTP-WST-S" from one camera to six
SEED_SOURCE_GROWTH = {"FTP-WSH": 6.1, "MoDNN": 6.0, "FTP-WST": 4.2, "FTP-WST-S": 3.1}
SOURCE_COUNTS = (1, 2, 3, 4, 5, 6)  # cameras, one per Pi, on the six-Pi cluster
SOURCE_GRIDS = (3, 5)
SOURCE_FRAMES = 4  # frames per camera back to back, for throughput
SEED_SOURCES = "WSH's latency grows linearly with sources, WST's stays near one device's"
SEED_REUSE_AWARE = {3: (0.20, 0.22), 5: (0.32, 0.45)}  # WST-S over WST: latency, throughput
REAL_EDGES = (1, 2, 3)  # edge workers really run here, beside one gateway worker
REAL_GRID = 3
REAL_FRAMES = 5  # the first is warm-up
REAL_SPACING = 2.5  # frames this many plain passes apart: each runs alone


def cluster(devices: int) -> str:
    """``devices`` Raspberry Pi 3 and the gateway, on one WiFi cell."""
    return f"rpi3*{devices}+{GATEWAY}@wifi"


@dataclass(frozen=True)
class Row:
    """One grid and placement mode on one cluster: what the plan and simulator say."""

    grid: int
    mode: str  # a key of MODES
    devices: int
    latency_ms: float
    redundancy: float
    sent_bytes: int  # every transfer of a frame: inputs, strips, tile outputs
    peak_device_bytes: int  # the most memory one Raspberry Pi needs (weights + activations)


@dataclass(frozen=True)
class RealRow:
    """A mode really run on this machine's local workers: ``edges`` edge workers and a
    gateway, beside plain ``module(x)`` on one thread and the calibrated prediction."""

    mode: str
    edges: int
    predicted_ms: float
    measured_ms: float  # median over the frames after the first
    plain_ms: float  # plain module(x) once per camera, one after the other
    stolen: int  # tiles of the measured frames run away from their camera
    tiles: int
    cameras: int = 1


@dataclass(frozen=True)
class SourcesRow:
    """Several cameras at once on the largest cluster: one frame from each (latency), and
    ``SOURCE_FRAMES`` from each back to back (throughput), simulated."""

    grid: int
    mode: str
    sources: int
    latency_ms: float
    throughput_fps: float  # images per second, over every camera


@dataclass(frozen=True)
class Result:
    """Every row, the baselines' memory per device on the largest cluster, and the real
    runs."""

    rows: tuple[Row, ...]
    baseline_bytes: dict[str, int]
    real: tuple[RealRow, ...] = ()
    machine: str = ""
    sources: tuple[SourcesRow, ...] = ()

    title = "deepthings: fused tiles of YOLOv2's first 16 layers, simulated"

    def find(self, grid: int, mode: str, devices: int) -> Row:
        """The row of one setting."""
        return next(r for r in self.rows
                    if (r.grid, r.mode, r.devices) == (grid, mode, devices))

    def to_dict(self) -> list[dict[str, object]]:
        """The rows, for JSON (real runs with ``"measured": true``)."""
        return [{"grid": f"{r.grid}x{r.grid}", "mode": r.mode, "devices": r.devices,
                 "latency_ms": r.latency_ms, "redundancy": r.redundancy,
                 "sent_bytes": r.sent_bytes, "peak_device_bytes": r.peak_device_bytes}
                for r in self.rows] + [{"measured": True, **dataclasses.asdict(r)}
                                       for r in self.real] + [
            {"cameras": True, **dataclasses.asdict(r)} for r in self.sources]

    @property
    def modes(self) -> list[str]:
        """The placement modes of the rows, in ``MODES`` order."""
        return [m for m in MODES if any(r.mode == m for r in self.rows)]

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Columns and rows for a terminal: latency per device count, per grid and mode."""
        counts = sorted({r.devices for r in self.rows})
        columns = ["grid", "mode", *(f"{e} Pi ms" for e in counts), "redundancy"]
        rows = []
        for grid in sorted({r.grid for r in self.rows}):
            for mode in self.modes:
                mine = [self.find(grid, mode, e) for e in counts]
                rows.append([f"{grid}x{grid}", mode,
                             *(f"{r.latency_ms:.0f}" for r in mine), f"{mine[0].redundancy:.2f}x"])
        return columns, rows

    def write(self, path: Path) -> None:
        """The page at ``path``."""
        path.write_text(self.markdown())

    def markdown(self) -> str:
        """The page for docs/reproductions/deepthings.md."""
        counts = sorted({r.devices for r in self.rows})
        grids = sorted({r.grid for r in self.rows})
        most = max(counts)
        work = ["| grid | FLOPs over the frame's, no reuse | with reuse | the authors' code |",
                "|---|---|---|---|"]
        work += [f"| {g}x{g} | {self.find(g, 'FTP', most).redundancy:.2f}x | "
                 f"{self.find(g, 'FTP + reuse', most).redundancy:.2f}x | "
                 f"{_seed(SEED_REDUNDANCY.get(g), 'x')} |" for g in grids]
        traffic = ["| grid | " + " | ".join(self.modes) + " |", "|---|" + "---|" * len(self.modes)]
        traffic += [f"| {g}x{g} | " + " | ".join(_mb(self.find(g, m, most).sent_bytes)
                                                 for m in self.modes) + " |" for g in grids]
        layer_based = self.find(grids[0], "MoDNN", most).peak_device_bytes
        memory = ["| plan | most memory on one Pi | against MoDNN | the seed (FTP against "
                  "layer-based) |", "|---|---|---|---|"]
        memory += [f"| `{name}` | {_mb(size)} | {size / layer_based - 1:+.0%} | |"
                   for name, size in self.baseline_bytes.items()]
        for g in grids:
            for mode in self.modes:
                size = self.find(g, mode, most).peak_device_bytes
                seed = SEED_MEMORY_CUT.get(g) if mode == "FTP" else None
                memory.append(f"| {mode} {g}x{g} | {_mb(size)} | {size / layer_based - 1:+.0%} | "
                              f"{_seed(-seed if seed else None, '%')} |")
        latency = ["| grid | mode | " + " | ".join(f"{e} Pi" for e in counts) + " |",
                   "|---|---|" + "---|" * len(counts)]
        for g in grids:
            for mode in self.modes:
                latency.append(f"| {g}x{g} | {mode} | " + " | ".join(
                    f"{self.find(g, mode, e).latency_ms:.0f}" for e in counts) + " |")

        def mean_ratio(mode: str, base: str, grid: int) -> float:
            return sum(self.find(grid, mode, e).latency_ms / self.find(grid, base, e).latency_ms
                       for e in counts) / len(counts)

        growth = (sum(self.find(5, "FTP", e).latency_ms / self.find(3, "FTP", e).latency_ms
                      for e in counts) / len(counts) - 1) if {3, 5} <= set(grids) else None
        seed_lines = [
            (f"- From 3x3 to 5x5 the latency grows by {growth:.0%} on average without "
             f"reuse (the seed: {SEED_5X5_OVER_3X3:.0%})." if growth is not None else ""),
            "- Reuse cuts latency by " + ", ".join(
                f"{1 - mean_ratio('FTP + reuse', 'FTP', g):.0%} at {g}x{g}" for g in grids)
            + f" on average (the seed: {SEED_REUSE_CUT[3]:.0%} at 3x3, "
              f"{SEED_REUSE_CUT[5]:.0%} at 5x5).",
            "- Stealing against tiles fixed by the plan: " + ", ".join(
                f"{mean_ratio('FTP-WST', 'FTP', g) - 1:+.0%} at {g}x{g}" for g in grids)
            + " on average. A plan that fixes tiles knows every device's speed and the "
              "WiFi cell's load in advance; stealing does not, and pays a request and the "
              "input's hop for every tile it moves — the seed's case for stealing is run "
              "time variation (several sources, unknown load), which one simulated frame "
              "does not have.",
            "- Stealing with reuse against fixed tiles with reuse: " + ", ".join(
                f"{mean_ratio('FTP-WST-S', 'FTP + reuse', g) - 1:+.0%} at {g}x{g}"
                for g in grids) + " on average (an odd tile waits for its neighbours' "
                "strips to travel to the camera Pi and out again). Running late odd tiles "
                "unshrunk, as the original does, against waiting for the strips: " + ", ".join(
                f"{mean_ratio('FTP-WST-S, fallback', 'FTP-WST-S', g) - 1:+.0%} at {g}x{g}"
                for g in grids) + " on average.",
            "- MoDNN (every layer gathered on the gateway) against FTP: " + ", ".join(
                f"{mean_ratio('MoDNN', 'FTP', g) - 1:+.0%} at {g}x{g}" for g in grids)
            + "; work sharing (FTP-WSH, tiles handed out equally) against FTP: " + ", ".join(
                f"{mean_ratio('FTP-WSH', 'FTP', g) - 1:+.0%} at {g}x{g}" for g in grids)
            + " on average.",
            "- Adding a Pi never slows a frame down with stealing: "
            + _monotone(lambda g, e: self.find(g, "FTP-WST", e).latency_ms, grids, counts)
            + "; with tiles fixed by the plan: "
            + _monotone(lambda g, e: self.find(g, "FTP", e).latency_ms, grids, counts) + ".",
        ]
        return "\n".join([
            "# Reproduction: seed 003 (DeepThings), fused tile partitioning",
            "",
            f"Generated by `edgeweave reproduce deepthings`. `{MODEL}` (YOLOv2's first 16 "
            "darknet layers, 608x608 input) fused whole into an N x N grid of tiles "
            "(`planner=\"deepthings\"`, `layers` = all of them), on 1 to 6 Raspberry Pi 3 "
            f"and a gateway (`{GATEWAY}`, which merges the tiles and computes none) on one "
            "WiFi cell; frames arrive at the first Pi (the camera). Modes: **FTP** — each "
            "tile's device fixed by the plan (list scheduling over the cost model); "
            "**FTP + reuse** — the same with the seed's data reuse; **FTP-WST** — every "
            "tile queued at the camera Pi and stolen at run time by whichever Pi runs out "
            "of work (`steal=True`, `units.stealing`: the simulator and the local workers "
            "follow the same rules); **FTP-WST-S** — stealing with reuse (even tiles "
            "first; an odd tile's layers are one task, opened once its neighbours' strips "
            "are back at the camera Pi: it waits for them); **FTP-WST-S, fallback** — the "
            "original's rule: an odd tile whose strips are late when a Pi reaches it runs "
            "unshrunk, one fused stack from the frame (`fallback=True`); **FTP-WSH** — DeepThings' work sharing: each frame sent to "
            "the gateway, which hands its tiles out equally, round robin over the Pis "
            "(`share=True`); **MoDNN** — MoDNN's biased one-dimensional partition (BODP, "
            "planner `bodp`): every layer cut into bands of rows in proportion to each "
            "Pi's speed, gathered on the gateway and handed out again for the next layer "
            "(relay units). The simulated tables are the plan's and the "
            "simulator's; one plan per grid and mode was checked equal to the model's "
            "output. The real runs at the end were measured on this machine.",
            "",
            "**Not reproduced yet** (issue 12): stealing on the Ray backend, real runs "
            "with several cameras, and the comparison with the original's C build on a "
            "16-core machine (the 2-core one is in `docs/benchmarks.md`).",
            "",
            "## Redundant computation",
            "",
            "What overlapping receptive fields recompute: the FLOPs of every tile's stack "
            "over the 16 layers' own. With reuse the odd tiles of a checkerboard take the "
            "strips their even neighbours computed.",
            "", *work, "",
            f"## Communication per frame ({most} Pi)",
            "",
            "Bytes over the links in one simulated frame: input regions to the tiles' "
            "devices, strips between tiles (reuse), tile outputs to the gateway (with "
            "stealing, the camera Pi's own tiles move nothing).",
            "", *traffic, "",
            f"## Memory per device ({most} Pi)",
            "",
            "The most any one Raspberry Pi needs: weights plus peak live activations "
            "(`units.footprints`; a fused stack frees each layer once used, but a device "
            "holds the tile outputs it computed until the frame is complete, as the "
            "workers do). With stealing the plan budgets the camera Pi for every tile, "
            "the worst case of nobody stealing. The seed reports FTP cutting memory by 69% "
            "(3x3) and 79% (5x5) against layer-based partitioning that gathers every "
            "layer (MoDNN's, which every other row is set against); edgeweave's own "
            "layer-based plans exchange only halos (`equal-split`), and "
            "`proportional-split` leaves the Pis little to hold because it gives most "
            "rows to the gateway. Here MoDNN needs less per Pi than FTP, not more: a Pi "
            "holds one band of one layer at a time (its input rows and its output rows), "
            "freed once the gateway gathered it, where a tile's stack holds its receptive "
            "field through the fused layers and its output until the frame is complete; "
            "the seed's 69–79% must count a layer-based device holding whole maps.",
            "", *memory, "",
            "## Single-frame latency (ms, simulated)",
            "", *latency, "",
            "## Against the seed",
            "", *[line for line in seed_lines if line], "",
            *self._sources_markdown(),
            *self._real_markdown(),
        ])

    def _sources_markdown(self) -> list[str]:
        if not self.sources:
            return []
        counts = sorted({r.sources for r in self.sources})
        rows = ["| grid | mode | " + " | ".join(f"{k} camera{'s' * (k > 1)}" for k in counts)
                + " |", "|---|---|" + "---|" * len(counts)]
        for grid in sorted({r.grid for r in self.sources}):
            for mode in RUN_MODES:
                mine = {r.sources: r for r in self.sources if (r.grid, r.mode) == (grid, mode)}
                rows.append(f"| {grid}x{grid} | {mode} | " + " | ".join(
                    f"{mine[k].latency_ms / 1e3:.1f} s, {mine[k].throughput_fps:.3f}/s"
                    for k in counts) + " |")
        def gains(mode: str, base: str) -> list[str]:
            found = []
            for grid in sorted({r.grid for r in self.sources}):
                pick = {(r.mode, r.sources): r for r in self.sources if r.grid == grid}
                latency = [pick[mode, k].latency_ms / pick[base, k].latency_ms - 1
                           for k in counts]
                rate = [pick[mode, k].throughput_fps / pick[base, k].throughput_fps - 1
                        for k in counts]
                seed = SEED_REUSE_AWARE.get(grid) if mode == "FTP-WST-S" else None
                found.append(f"{grid}x{grid}: latency {sum(latency) / len(latency):+.0%}, "
                             f"throughput {sum(rate) / len(rate):+.0%}" + (
                                 f" (the seed: {-seed[0]:+.0%}, {seed[1]:+.0%})" if seed else ""))
            return found

        def growth(grid: int, mode: str) -> float:
            mine = {r.sources: r.latency_ms for r in self.sources
                    if (r.grid, r.mode) == (grid, mode)}
            return mine[max(counts)] / mine[min(counts)]

        most = max(counts)
        return [
            f"## Several cameras ({max(DEVICE_COUNTS)} Pi, simulated)",
            "",
            "Each camera is a Pi of its own (camera k on `rpi3-k`) with its own copy of "
            "the model (`plan(..., sources=...)`), all sending frames at once; the gateway "
            "merges every camera's tiles. Each cell: the latency of one frame from every "
            f"camera at once, and the images per second when each sends {SOURCE_FRAMES} "
            "frames back to back. With FTP each camera's tiles are list-scheduled as if "
            "it were alone; with FTP-WST they are queued at their camera and any idle Pi "
            "steals from any camera (round robin over the cameras that offered work); "
            "FTP-WST-S steals with reuse (even tiles first, each odd tile's layers one "
            "task once its neighbours' strips are back at its camera); with FTP-WSH "
            "every camera's frame goes to the gateway, which hands the tiles out equally; "
            "with MoDNN every camera's layers are gathered and handed out by the gateway.",
            "", *rows, "",
            f"Latency growth from 1 to {most} cameras (max over the frames): " + "; ".join(
                f"{grid}x{grid}: " + ", ".join(
                    f"{mode} {growth(grid, mode):.1f}x" + (
                        f" (the seed: {SEED_SOURCE_GROWTH[mode]}x)"
                        if mode in SEED_SOURCE_GROWTH else "")
                    for mode in RUN_MODES)
                for grid in sorted({r.grid for r in self.sources})) + ".",
            "",
            f"Averaged over 1 to {most} cameras, stealing against fixed tiles: "
            + "; ".join(gains("FTP-WST", "FTP")) + ". Reuse-aware stealing against "
            "stealing: " + "; ".join(gains("FTP-WST-S", "FTP-WST")) + f". The seed: "
            f"{SEED_SOURCES}. Here every Pi is busy from two cameras on, so latency grows "
            "with the cameras in every mode.",
            "",
        ]

    def _real_markdown(self) -> list[str]:
        if not self.real:
            return []
        rows = ["| edge workers | cameras | mode | predicted | measured | error | plain "
                "`module(x)` | speed-up over plain | tiles stolen |",
                "|---|---|---|---|---|---|---|---|---|"]
        rows += [f"| {r.edges} | {r.cameras} | {r.mode} | {r.predicted_ms:.0f} ms | "
                 f"{r.measured_ms:.0f} ms | "
                 f"{r.predicted_ms / r.measured_ms - 1:+.0%} | {r.plain_ms:.0f} ms | "
                 f"{r.plain_ms / r.measured_ms:.2f}x | "
                 + (f"{r.stolen} of {r.tiles} |" if MODES[r.mode][0] == "deepthings" else "— |")
                 for r in self.real]
        return [
            "## Really run on this machine",
            "",
            f"{self.machine}. `{MODEL}` at 608x608 in {REAL_GRID}x{REAL_GRID} tiles of all 16 "
            "layers on local worker processes of one torch thread each: E edge workers "
            "(`x86-core-0` receives the frames) and one gateway worker that merges, "
            "E + 1 processes in all, the cluster calibrated for them first (`edgeweave "
            f"calibrate`); {REAL_FRAMES} frames {REAL_SPACING} times plain `module(x)`'s time "
            "apart, so that none waits for the previous one, the first left out. Plain "
            "`module(x)` at one thread is timed in the same run. With two cameras (the "
            "first two edge workers, each with its own copy of the model), a frame from "
            "each arrives at once: latency is until both are done, and plain `module(x)` "
            "runs twice, one after the other. "
            "\"Tiles stolen\": tiles of the measured frames computed away from the camera "
            "worker. On a machine with fewer cores than processes the workers share "
            "cores, so more edges cannot mean more speed here (the seed's 2-core figure "
            "is gateway-bound too); the runs check that stealing really happens across "
            "the processes, outputs equal, and how the prediction compares. The "
            "calibration fits each layer's time as a line through the whole layer and "
            "the two half bands of a real two-way split (`runtime/calibrate.py`); a tile "
            f"of a {REAL_GRID}x{REAL_GRID} grid computes about a "
            f"{REAL_GRID * REAL_GRID}th of each layer, where that line is an "
            "extrapolation, and the error column shows how far off it is.",
            "", *rows, "",
        ]


def _monotone(latency: Callable[[int, int], float], grids: Sequence[int],
              counts: Sequence[int]) -> str:
    """Whether latency never rises with the device count, and where it does."""
    rises = [f"{g}x{g} from {a} to {b} Pi" for g in grids
             for a, b in zip(counts, counts[1:]) if latency(g, b) > latency(g, a) * 1.001]
    return "true at every grid" if not rises else "rises at " + ", ".join(rises)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _seed(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}x" if unit == "x" else f"{value:+.0%}"


def _peak_pi_bytes(made: Plan) -> int:
    return max(f.total_bytes for d, f in footprints(made).items() if d != GATEWAY)


def reproduce(progress: Callable[[str], None] | None = None,
              grids: Sequence[int] = GRIDS,
              device_counts: Sequence[int] = DEVICE_COUNTS,
              real_edges: Sequence[int] = REAL_EDGES,
              source_counts: Sequence[int] = SOURCE_COUNTS) -> Result:
    """Plan and simulate every grid in every mode on every cluster (one plan per grid and
    mode checked against the model), several cameras at once (``source_counts``), then
    really run the ``RUN_MODES`` modes on ``real_edges`` edge workers of this machine."""
    model = traced(MODEL)
    every = len(model.graph.layers) - len(model.graph.inputs)
    rows = []
    for grid in grids:
        for mode in MODES:
            for count in device_counts:
                if progress:
                    progress(f"{grid}x{grid} {mode} on {count} Pi")
                made = plan_mode(model.graph, cluster(count), mode, every, grid)
                if count == device_counts[-1] and (MODES[mode][0] != "bodp" or grid == grids[0]):
                    model.check(made)  # MoDNN's bands do not depend on the grid
                timeline = simulate(made)
                rows.append(Row(grid, mode, count, 1e3 * timeline.latency_s[0],
                                made.notes.get("redundancy", {}).get(MODEL, 1.0),
                                sum(timeline.bytes_moved().values()), _peak_pi_bytes(made)))
    largest = cluster(max(device_counts))
    baselines = {name: _peak_pi_bytes(plan(model.graph, largest, planner=name))
                 for name in ("local", "equal-split", "proportional-split")}
    cameras = _cameras(model, every, source_counts, progress)
    real = _real_runs(model, every, real_edges, progress) if real_edges else ()
    return Result(tuple(rows), baselines, real, _machine() if real_edges else "", cameras)


def plan_mode(graphs, where: str | Cluster, mode: str, every: int, grid: int,
              gateway: str = GATEWAY, sources: dict[str, str] | None = None) -> Plan:
    """The plan of one of ``MODES``: the first ``every`` layers tiled in a grid x grid, or
    (MoDNN) in bands, the gateway computing none of them."""
    planner, options = MODES[mode]
    if planner == "bodp":
        return plan(graphs, where, planner="bodp", gateway=gateway, gateway_rows=False,
                    layers=every, sources=sources)
    return plan(graphs, where, planner="deepthings", n=grid, m=grid, layers=every,
                gateway=gateway, gateway_tiles=False, sources=sources, **options)


def _cameras(model, every: int, counts: Sequence[int], progress) -> tuple[SourcesRow, ...]:
    """The ``RUN_MODES`` modes with several cameras on the six-Pi cluster, simulated."""
    found = []
    for grid in SOURCE_GRIDS if counts else ():
        for count in counts:
            graphs = {f"cam{k}": dataclasses.replace(model.graph, name=f"cam{k}")
                      for k in range(count)}
            sources = {f"cam{k}": f"rpi3-{k}" for k in range(count)}
            for mode in RUN_MODES:
                if progress:
                    progress(f"{grid}x{grid} {mode} with {count} camera(s)")
                made = plan_mode(graphs, cluster(max(DEVICE_COUNTS)), mode, every, grid,
                                 sources=sources)
                busy = simulate(made, frames=SOURCE_FRAMES)
                found.append(SourcesRow(grid, mode, count, made.notes["predicted_ms"],
                                        count * SOURCE_FRAMES / busy.done_s[-1]))
    return tuple(found)


def _real_runs(model, every: int, edges: Sequence[int], progress) -> tuple[RealRow, ...]:
    """The ``RUN_MODES`` modes on local workers, the cluster calibrated once for the most."""
    from edgeweave.runtime import run
    from edgeweave.runtime.calibrate import calibrate
    from edgeweave.runtime.profiling import plain_s

    if progress:
        progress("calibrating local workers")
    module = model.module
    with tempfile.TemporaryDirectory() as directory:
        calibrated = calibrate(model.graph, model.inputs,
                               Cluster.load(f"x86-core*{max(edges) + 1}@ethernet"),
                               directory=directory)
        found = []
        for count in edges:
            here = _first(calibrated, count + 1)
            gateway = here.names[-1]
            for mode in RUN_MODES:
                if progress:
                    progress(f"{mode} on {count} edge worker(s), really")
                made = plan_mode(model.graph, here, mode, every, REAL_GRID, gateway)
                plain = plain_s(module, model.inputs)
                measured = run(made, model.inputs[0] if len(model.inputs) == 1
                               else model.inputs, backend="local", frames=REAL_FRAMES,
                               interval_s=REAL_SPACING * plain)
                for output in measured.outputs:
                    model.check_output(output)
                tiles = [e for e in measured.timeline.events if e.kind == "compute"
                         and e.frame > 0 and _tile_step(made, e.unit)]
                found.append(RealRow(
                    mode, count, made.notes["predicted_ms"],
                    1e3 * statistics.median(measured.timeline.latency_s[1:]),
                    1e3 * (plain + plain_s(module, model.inputs)) / 2,
                    sum(e.resource != here.names[0] for e in tiles), len(tiles)))
        found += _real_cameras(model, every, _first(calibrated, max(edges) + 1), progress)
    return tuple(found)


def _real_cameras(model, every: int, here: Cluster, progress) -> list[RealRow]:
    """The ``RUN_MODES`` with a camera on each of the first two edge workers, really."""
    from edgeweave.runtime import run
    from edgeweave.runtime.profiling import plain_s

    if len(here.devices) < 3:
        return []
    names = ("cam0", "cam1")
    graphs = {name: dataclasses.replace(model.graph, name=name) for name in names}
    sources = dict(zip(names, here.names))
    inputs = {name: model.inputs[0] for name in names}
    found = []
    for mode in RUN_MODES:
        if progress:
            progress(f"{mode} with two cameras, really")
        made = plan_mode(graphs, here, mode, every, REAL_GRID, here.names[-1], sources)
        plain = sum(plain_s(model.module, model.inputs) for _ in names)
        measured = run(made, inputs, backend="local", frames=REAL_FRAMES,
                       interval_s=REAL_SPACING * plain)
        for output in measured.outputs:
            for name in names:
                model.check_output(output[name])
        tiles = [(e, made.unit(e.unit.partition("..")[0])) for e in measured.timeline.events
                 if e.kind == "compute" and e.frame > 0 and _tile_step(made, e.unit)]
        found.append(RealRow(mode, len(here.devices) - 1, made.notes["predicted_ms"],
                             1e3 * statistics.median(measured.timeline.latency_s[1:]),
                             1e3 * plain, sum(e.resource != sources[u.graph] for e, u in tiles),
                             len(tiles), cameras=len(names)))
    return found


def _tile_step(made: Plan, label: str) -> bool:
    """Whether a compute event's step is a tile's stack, or the first layer of a tile's
    chain (one per tile, whichever mode)."""
    unit = made.unit(label.partition("..")[0])
    return unit.layers[0] == made.graphs[unit.graph].layers[1].name


def _first(whole: Cluster, count: int) -> Cluster:
    """The cluster of ``whole``'s first ``count`` devices and the links between them."""
    names = set(whole.names[:count])
    return dataclasses.replace(whole, name=f"{whole.name} (first {count})",
                               devices=whole.devices[:count],
                               links=tuple(l for l in whole.links if {l.a, l.b} <= names))


def _machine() -> str:
    import os
    import platform

    import torch

    return (f"Measured on {platform.machine()} with {os.cpu_count()} cores, torch "
            f"{torch.__version__}")
