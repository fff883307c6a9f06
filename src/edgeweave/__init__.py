"""edgeweave: plan, simulate and run DNN inference across heterogeneous edge devices.

>>> import edgeweave as ew
>>> module, example = ew.models.get("line")
>>> graph = ew.trace(module, example, name="line")
>>> plan = ew.plan(graph, "rpi4b+edge-server@wifi", planner="neurosurgeon")
>>> timeline = ew.simulate(plan)
>>> outputs = ew.run(plan, example).output
>>> bool((outputs - module(example)).abs().max() < 1e-4)
True
"""

from edgeweave import models
from edgeweave.cluster import Cluster, Device, Link
from edgeweave.cost import CostModel
from edgeweave.cost import measure as profile
from edgeweave.errors import EdgeweaveError
from edgeweave.graph import Layer, LayerGraph, OpKind, trace
from edgeweave.planners import plan
from edgeweave.runtime import Run, StreamRun, run, run_stream
from edgeweave.runtime.calibrate import calibrate
from edgeweave.simulation import simulate
from edgeweave.units import Plan, Region, Stream, Timeline, Unit

__version__ = "0.1.0"

__all__ = ["Cluster", "CostModel", "Device", "EdgeweaveError", "Layer", "LayerGraph", "Link",
           "OpKind", "Plan", "Region", "Run", "Stream", "StreamRun", "Timeline", "Unit",
           "__version__", "calibrate", "models", "plan", "profile", "run", "run_stream",
           "simulate", "trace"]
