"""The discrete-event simulator (its timeline format lives in ``units``, shared with the
runtime)."""

from edgeweave.simulation.simulator import predicted_s, simulate

__all__ = ["predicted_s", "simulate"]
