"""edgeweave: plan, simulate and run DNN inference across heterogeneous edge devices.

>>> import edgeweave as ew
>>> module, example = ew.models.get("line")
>>> graph = ew.trace(module, example)
>>> graph.structure.value
'line'
"""

from edgeweave import models
from edgeweave.errors import EdgeweaveError
from edgeweave.graph import Layer, LayerGraph, OpKind, trace

__version__ = "0.1.0"

__all__ = ["EdgeweaveError", "Layer", "LayerGraph", "OpKind", "__version__", "models", "trace"]
