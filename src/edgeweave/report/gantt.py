"""Gantt charts of timelines: one lane per device and per link; a colour per model when a
plan runs several (``groups`` maps unit ids to model names), else a colour per frame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from edgeweave.report.figure import pyplot, save
from edgeweave.units import Timeline


def gantt(timelines: Sequence[tuple[str, Timeline]], path: str | Path,
          groups: Mapping[str, str] | None = None) -> Path:
    """Draw one chart per (title, timeline), stacked, into a PNG at ``path``."""
    plt = pyplot()
    lanes_of = [_lanes(t) for _, t in timelines]
    heights = [max(1.5, 0.45 * len(lanes) + 1.0) for lanes in lanes_of]
    figure, axes = plt.subplots(len(timelines), 1, figsize=(11, sum(heights)), squeeze=False,
                                gridspec_kw={"height_ratios": heights})
    colours = plt.get_cmap("tab10")
    names = sorted(set(groups.values())) if groups and len(set(groups.values())) > 1 else None
    for axis, (title, timeline), lanes in zip(axes[:, 0], timelines, lanes_of):
        for event in timeline.events:
            if event.end_s <= event.start_s:
                continue  # a model input appearing: nothing to draw
            row = lanes.index(event.resource)
            width = max(event.end_s - event.start_s, 1e-9) * 1e3
            axis.barh(row, width, left=event.start_s * 1e3, height=0.6,
                      color=colours((names.index(groups[event.unit]) if names
                                     else event.frame) % 10),
                      alpha=0.95 if event.kind == "compute" else 0.55,
                      hatch=None if event.kind == "compute" else "//", edgecolor="black",
                      linewidth=0.3)
        axis.set_yticks(range(len(lanes)), lanes)
        axis.invert_yaxis()
        axis.set_xlabel("time (ms)")
        latency = sum(timeline.latency_s) / len(timeline.latency_s)
        axis.set_title(f"{title} — {timeline.source}, mean latency {latency * 1e3:.1f} ms, "
                       f"{len(timeline.done_s)} frame(s); hatched: transfers, colour: "
                       + (f"model ({', '.join(names)})" if names else "frame"),
                       fontsize=9)
        axis.grid(axis="x", alpha=0.3)
    return save(figure, path)


def _lanes(timeline: Timeline) -> list[str]:
    devices = [e.resource for e in timeline.events if e.kind == "compute"]
    links = [e.resource for e in timeline.events if e.kind == "transfer"]
    return list(dict.fromkeys(devices)) + list(dict.fromkeys(links))
