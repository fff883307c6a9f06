"""What every planner receives: the models, the cluster, the cost model, its options."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeweave.cluster import Cluster, Device
from edgeweave.cost import CostModel
from edgeweave.graph import LayerGraph, OpKind
from edgeweave.units.workload import Stream, Workload


@dataclass(frozen=True)
class Problem:
    """A planning problem; ``models`` gives the model spec of graphs that have one;
    ``workload`` the stream of each model (``units.workload``: its source device, when its
    frames arrive, its weight and deadline) — a model without one arrives at time 0 at the
    cluster's first device."""

    graphs: Mapping[str, LayerGraph]
    cluster: Cluster
    cost: CostModel
    options: Mapping[str, Any]
    models: Mapping[str, str]
    workload: Workload = field(default_factory=dict)

    @functools.cached_property
    def streams(self) -> dict[str, Stream]:
        """Every model's stream, the default filled in: what the plan records."""
        first = self.cluster.devices[0].name
        return {name: self.workload.get(name, Stream(first)) for name in self.graphs}

    @property
    def sources(self) -> dict[str, str]:
        """Per model, the device where its inputs arrive."""
        return {name: stream.source for name, stream in self.streams.items()}

    def source_of(self, graph: LayerGraph) -> Device:
        """The device where ``graph``'s inputs arrive and its outputs go back."""
        return self.cluster.device(self.streams[graph.name].source)

    def graph_s(self, graph: LayerGraph, device: Device) -> float:
        """Seconds for ``device`` to compute all of ``graph``."""
        return sum(self.cost.compute_s(graph, layer, device) for layer in graph)

    def fastest(self) -> Device:
        """The device that computes the whole workload soonest (first of equals)."""
        return min(self.cluster.devices,
                   key=lambda d: sum(self.graph_s(g, d) for g in self.graphs.values()))

    def layers(self, graph: LayerGraph) -> list[str]:
        """The layers a planner places (all but the model inputs)."""
        return [layer.name for layer in graph if layer.kind is not OpKind.INPUT]
