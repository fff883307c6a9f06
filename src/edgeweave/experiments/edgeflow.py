"""Seed 002's kind of experiment (EdgeFlow): DAG models — YOLOv5s first — on clusters of 2
to 8 mixed edge devices over WiFi and Ethernet, every layer-by-layer planner side by side.

The seed's text gives no testbed, only the headline: inference latency reduced by up to
40.2% against the other approaches. Our clusters mix the presets (Raspberry Pi 3 / 4B,
Jetson Nano / TX2; the source — where the input arrives and the outputs return — is the
first device); the networks are one shared 18.88 Mbps WiFi cell and switched gigabit
Ethernet. Every figure is the simulator's; every EdgeFlow plan is checked against the
model's own output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeweave.experiments.zoo import traced
from edgeweave.planners import plan
from edgeweave.simulation import simulate
from edgeweave.units import Timeline
from edgeweave.units import Plan

DEVICE_SETS = ("rpi4b+jetson-nano", "rpi4b*2+jetson-nano", "rpi4b*2+jetson-nano*2",
               "rpi4b*3+jetson-nano*2+jetson-tx2", "rpi3*4+rpi4b*2+jetson-nano*2")
NETWORKS = ("wifi", "ethernet")
MODELS = ("yolov5s", "googlenet", "resnet50", "mobilenet_v2", "inception_resnet_v2")
DISTRIBUTED = ("heft", "equal-split", "proportional-split")  # the paper's "other approaches"
BASELINES = (*DISTRIBUTED, "local", "remote")
PAPER_BEST_REDUCTION = 0.402
GANTT = ("yolov5s", "rpi4b*3+jetson-nano*2+jetson-tx2@ethernet")


def clusters() -> list[str]:
    """The experiment's clusters as expressions, 2 to 8 devices over each network."""
    return [f"{devices}@{network}" for network in NETWORKS for devices in DEVICE_SETS]


@dataclass(frozen=True)
class Row:
    """One model on one cluster: every planner's simulated latency (ms), and what
    EdgeFlow chose (the progressive LP, or the whole model on one device)."""

    model: str
    cluster: str
    latency_ms: dict[str, float]
    chosen: str

    def reduction(self, baseline: str) -> float:
        """EdgeFlow's latency reduction against a baseline (0.25: 25% lower)."""
        return 1 - self.latency_ms["edgeflow"] / self.latency_ms[baseline]


@dataclass(frozen=True)
class Result:
    """Every row, and the EdgeFlow plan and timeline drawn as pictures."""

    rows: tuple[Row, ...]
    drawn: tuple[str, Plan, Timeline] | None

    def to_dict(self) -> list[dict[str, object]]:
        """The rows, with EdgeFlow's reduction against each baseline, for JSON."""
        return [{"model": r.model, "cluster": r.cluster, "latency_ms": r.latency_ms,
                 "chosen": r.chosen, "reduction": {b: r.reduction(b) for b in BASELINES}}
                for r in self.rows]

    title = "edgeflow: simulated latency per planner, ms"

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Columns and rows for a terminal: latency per planner (ms), and EdgeFlow's
        reduction against the best distributed baseline."""
        columns = ["model", "cluster", "edgeflow", *BASELINES, "vs best distributed"]
        rows = [[r.model, r.cluster, *(f"{r.latency_ms[p]:.0f}" for p in ("edgeflow",
                                                                            *BASELINES)),
                 f"{1 - r.latency_ms['edgeflow'] / min(r.latency_ms[b] for b in DISTRIBUTED):+.1%}"]
                for r in self.rows]
        return columns, rows

    def write(self, path: Path) -> None:
        """The page at ``path``, the Gantt chart and partition map beside it."""
        if self.drawn is None:
            path.write_text(self.markdown())
            return
        from edgeweave.report import gantt, partition_map

        title, made, timeline = self.drawn
        chart, layout = (path.with_name(f"{path.stem}-{kind}.png") for kind in ("gantt", "map"))
        gantt([(title, timeline)], chart)
        partition_map(made, layout)
        path.write_text(self.markdown((chart.name, layout.name)))

    def markdown(self, pictures: tuple[str, str] | None = None) -> str:
        """The page for docs/reproductions/edgeflow.md."""
        planners = ("edgeflow", *BASELINES)
        latency = ["| model | cluster | " + " | ".join(planners) + " | EdgeFlow chose |",
                   "|---|---|" + "---|" * len(planners) + "---|"]
        latency += [f"| {r.model} | `{r.cluster}` | " + " | ".join(
            _cell(r, p) for p in planners) + f" | {r.chosen} |" for r in self.rows]
        reduction = ["| model | network | " + " | ".join(f"vs {b}" for b in BASELINES) + " |",
                     "|---|---|" + "---|" * len(BASELINES)]
        for model in dict.fromkeys(r.model for r in self.rows):
            for network in NETWORKS:
                mine = [r for r in self.rows if r.model == model
                        and r.cluster.endswith(f"@{network}")]
                if mine:
                    reduction.append(f"| {model} | {network} | " + " | ".join(
                        _spread([r.reduction(b) for r in mine]) for b in BASELINES) + " |")
        yolo = [r for r in self.rows if r.model == "yolov5s"]
        never_slower = all(r.latency_ms["edgeflow"] <= min(r.latency_ms["heft"],
                                                           r.latency_ms["equal-split"]) + 1e-9
                           for r in yolo)
        best = max(((r.reduction(b), r, b) for r in self.rows for b in DISTRIBUTED),
                   key=lambda t: t[0])
        return "\n".join([
            "# Reproduction: seed 002 (EdgeFlow), progressive LP partitioning",
            "",
            "Generated by `edgeweave reproduce edgeflow`. Latency of one inference (ms), "
            "predicted by the simulator; every EdgeFlow plan's inline execution was checked "
            "equal to the model's output.",
            "",
            "## Setting",
            "",
            "- The seed's text describes no testbed, only its headline: EdgeFlow reduces "
            f"inference latency by up to {PAPER_BEST_REDUCTION:.1%} against the other "
            "approaches. We build its kind of experiment from our presets.",
            "- Clusters of 2 to 8 devices mixing Raspberry Pi 3 / 4B and Jetson Nano / TX2 "
            "(`edgeweave.cluster.presets`); the first device is where the input arrives and "
            "the outputs return. Networks: one shared WiFi cell (18.88 Mbps, every transfer "
            "on the same air) and switched gigabit Ethernet.",
            "- Planners: `edgeflow` (ours, [planners](../planners.md#edgeflow-seed-002)); "
            "`heft`, whole layers list-scheduled on the DAG; `equal-split` and "
            "`proportional-split`, every layer cut into equal or throughput-proportional "
            "bands (MoDNN / CoEdge style); `local` and `remote`, single-device execution on "
            "the source and on the fastest device.",
            "",
            "## Latency",
            "", *latency, "",
            "## EdgeFlow's reduction against each baseline",
            "",
            "Range over the clusters of each network (min to max); positive: EdgeFlow is "
            "faster.",
            "", *reduction, "",
            "## Against the paper",
            "",
            f"- Our largest reduction against a distributed approach: {best[0]:.1%} "
            f"({best[1].model} on `{best[1].cluster}` against `{best[2]}`); the paper's "
            f"headline: up to {PAPER_BEST_REDUCTION:.1%}. Against splitting every layer "
            "over every device the reductions are large on WiFi, where those baselines pay "
            "for every halo on one slow shared medium; against HEFT they are small on WiFi "
            "for YOLOv5s (its feature maps are too big to move at 18.88 Mbps, so every "
            "planner keeps nearly everything where the input arrives) and up to a few tens "
            "of per cent on Ethernet. Against the source device alone (`local`) they are "
            "what any offloading gives: large wherever a faster device is reachable.",
            "- YOLOv5s, the model the seed is built for (no cut point in its neck): EdgeFlow "
            + ("is never slower than HEFT or equal split on any of these clusters."
               if never_slower else "is slower than HEFT or equal split somewhere above."),
            "- EdgeFlow decides one layer at a time. Where moving the input once to a faster "
            "device pays over all later layers (a slow source on WiFi), no single layer's "
            "LP sees it; the planner then keeps the whole model on that device (\"EdgeFlow "
            "chose\"). A throughput-proportional split of every layer sometimes beats it on "
            "Ethernet: its bands stay aligned layer after layer, while the LP rebalances "
            "each layer against its predecessors' finishing times.",
            *(["", "## One YOLOv5s plan", "",
               f"EdgeFlow on `{GANTT[1]}`: which device computes which rows of each layer,",
               "", f"![Partition map of EdgeFlow's YOLOv5s plan]({pictures[1]})", "",
               "and the plan simulated (devices above, links below):", "",
               f"![Gantt chart of EdgeFlow's YOLOv5s plan]({pictures[0]})"]
              if pictures else []),
            "",
        ])


def _cell(row: Row, planner: str) -> str:
    text = f"{row.latency_ms[planner]:.0f}"
    return f"**{text}**" if row.latency_ms[planner] == min(row.latency_ms.values()) else text


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):+.1%} to {max(values):+.1%}"


def reproduce(progress: Callable[[str], None] | None = None,
              model_names: Sequence[str] = MODELS,
              cluster_names: Sequence[str] | None = None) -> Result:
    """Plan and simulate every model on every cluster with EdgeFlow and its baselines,
    checking each EdgeFlow plan against the model; ``progress`` hears each step's name."""
    rows, drawn = [], None
    for name in model_names:
        model_of = traced(name)
        for cluster in cluster_names or clusters():
            if progress:
                progress(f"{name} on {cluster}")
            plans = {p: plan(model_of.graph, cluster, planner=p)
                     for p in ("edgeflow", *BASELINES)}
            model_of.check(plans["edgeflow"])
            timelines = {p: simulate(made) for p, made in plans.items()}
            rows.append(Row(name, cluster, {p: t.latency_s[0] * 1e3
                                            for p, t in timelines.items()},
                            plans["edgeflow"].notes["chosen"]))
            if (name, cluster) == GANTT:
                drawn = (f"{name}, edgeflow on {cluster}", plans["edgeflow"],
                         timelines["edgeflow"])
    return Result(tuple(rows), drawn)
