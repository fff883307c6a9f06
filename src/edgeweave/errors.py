"""The one exception tree of edgeweave.

Every error a user can cause is an ``EdgeweaveError``; the CLI catches only the root and
prints its message. Messages name the model, layer, module or option involved and, where
there is one, the way out.

::

    EdgeweaveError
    ├── UnknownNameError        an unknown model, planner, preset or command argument
    ├── ModelError              a model edgeweave cannot take
    │   ├── UntraceableModelError   torch.fx cannot trace one of its modules
    │   └── ExampleInputError       the example input does not fit the model
    ├── GraphError              a query or execution the layer graph cannot answer
    ├── ClusterConfigError      a cluster file, dict or expression that does not describe one
    ├── PlanError               a plan that cannot run: uncovered outputs, unmet needs, cycles,
    │                           a device out of memory
    └── WorkerError             a device's worker failed, or died with no survivor to take over
"""

from __future__ import annotations


class EdgeweaveError(Exception):
    """Root of every error edgeweave raises on purpose."""


class UnknownNameError(EdgeweaveError, KeyError):
    """A name (model, planner, preset) that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelError(EdgeweaveError):
    """A model that edgeweave cannot take as it is."""


class UntraceableModelError(ModelError):
    """torch.fx cannot trace a module of the model."""


class ExampleInputError(ModelError):
    """The example input does not fit the model (wrong type, shape or dtype)."""


class GraphError(EdgeweaveError):
    """A layer-graph query or partial execution that cannot be answered."""


class ClusterConfigError(EdgeweaveError):
    """A cluster description that is malformed; the message names the field and the fix."""


class PlanError(EdgeweaveError):
    """A plan that is malformed or cannot run as it stands; the message names the unit or
    device."""


class WorkerError(EdgeweaveError):
    """A device's worker failed, or died with no survivor able to take over; the message
    names the device and the frame."""
