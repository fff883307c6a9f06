"""Partition maps: where each layer of a model runs, and which part of it.

One column per layer in topological order; in it, the layer's output split the way its
units split it — by rows, channels or features, whichever dimension the units divide —
stacked from 0 to 1 and coloured by device. A layer computed whole is one block; a model
cut once between two devices is two colours meeting at one column; EdgeFlow's bands are
stripes that move as the shares change from layer to layer.
"""

from __future__ import annotations

from pathlib import Path

from edgeweave.report.figure import pyplot, save
from edgeweave.units import Plan, Region, layer_regions


def partition_map(plan: Plan, path: str | Path, model: str | None = None) -> Path:
    """Draw the partition of ``model`` (default: the plan's first) into a PNG at ``path``."""
    plt = pyplot()
    from matplotlib.patches import Patch, Rectangle

    name = model or next(iter(plan.graphs))
    graph = plan.graphs[name]
    column = {layer: i for i, layer in enumerate(graph.topological_order())}
    colours = plt.get_cmap("tab10")
    colour = {device: colours(i % 10) for i, device in enumerate(plan.cluster.names)}
    figure, axis = plt.subplots(figsize=(min(40.0, max(8.0, len(graph) / 12)), 3.6))
    used: dict[str, None] = {}
    for unit in plan.units:
        if unit.graph != name:
            continue
        used[unit.device] = None
        for layer, region in layer_regions(unit, graph).items():
            low, high = _share(region, graph[layer].output_shape)
            axis.add_patch(Rectangle((column[layer], low), 1.0, high - low,
                                     facecolor=colour[unit.device], edgecolor="none"))
    axis.set_xlim(0, len(column))
    axis.set_ylim(0, 1)
    axis.set_xlabel("layer (topological order)")
    axis.set_ylabel("share of its output")
    axis.set_title(f"{name}: {plan.planner} on {plan.cluster.name}", fontsize=9)
    axis.legend(handles=[Patch(color=colour[d], label=d) for d in used], fontsize=8,
                loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save(figure, path)


def _share(region: Region, shape: tuple[int, ...] | None) -> tuple[float, float]:
    """The part of the output a region covers along the first dimension it divides."""
    if shape is None or region.ndim != len(shape):
        return 0.0, 1.0
    for (start, stop), size in zip(region.bounds, shape):
        if (start, stop) != (0, size):
            return start / size, stop / size
    return 0.0, 1.0
