"""Cost models: analytic rooflines and measured per-layer profiles."""

from edgeweave.cost.model import CostModel
from edgeweave.cost.profile import ModelProfile, load, measure, save

__all__ = ["CostModel", "ModelProfile", "load", "measure", "save"]
