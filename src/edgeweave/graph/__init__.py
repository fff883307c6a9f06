"""The layer graph: tracing a model into layers with shapes, FLOPs and bytes."""

from edgeweave.graph.layer import Geometry, Layer, OpKind
from edgeweave.graph.layer_graph import LayerGraph, Structure
from edgeweave.graph.trace import trace

__all__ = ["Geometry", "Layer", "LayerGraph", "OpKind", "Structure", "trace"]
