"""The discrete-event simulator (its timeline format lives in ``units``, shared with the
runtime)."""

from edgeweave.simulation.simulator import simulate

__all__ = ["simulate"]
