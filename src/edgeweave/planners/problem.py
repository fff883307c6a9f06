"""What every planner receives: the models, the cluster, the cost model, its options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeweave.cluster import Cluster, Device
from edgeweave.cost import CostModel
from edgeweave.graph import LayerGraph, OpKind


@dataclass(frozen=True)
class Problem:
    """A planning problem; ``models`` gives the model spec of graphs that have one;
    ``sources`` the device where a model's inputs arrive, where it is not the cluster's
    first."""

    graphs: Mapping[str, LayerGraph]
    cluster: Cluster
    cost: CostModel
    options: Mapping[str, Any]
    models: Mapping[str, str]
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def source(self) -> Device:
        """The device where inputs arrive by default (the cluster's first)."""
        return self.cluster.devices[0]

    def source_of(self, graph: LayerGraph) -> Device:
        """The device where ``graph``'s inputs arrive and its outputs go back."""
        return self.cluster.device(self.sources.get(graph.name, self.source.name))

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
