"""edgeweave: plan, simulate and run DNN inference across heterogeneous edge devices.

>>> import edgeweave as ew
>>> module, example = ew.models.get("line")
>>> graph = ew.trace(module, example)
>>> graph.structure.value
'line'
>>> ew.Cluster.load("rpi4b+edge-server@wifi").names
('rpi4b', 'edge-server')
"""

from edgeweave import models
from edgeweave.cluster import Cluster, Device, Link
from edgeweave.cost import CostModel
from edgeweave.cost import measure as profile
from edgeweave.errors import EdgeweaveError
from edgeweave.graph import Layer, LayerGraph, OpKind, trace

__version__ = "0.1.0"

__all__ = ["Cluster", "CostModel", "Device", "EdgeweaveError", "Layer", "LayerGraph", "Link",
           "OpKind", "__version__", "models", "profile", "trace"]
