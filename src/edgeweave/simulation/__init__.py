"""The discrete-event simulator and the timeline format it shares with the runtime."""

from edgeweave.simulation.simulator import simulate, unit_compute_s
from edgeweave.simulation.timeline import Event, Timeline

__all__ = ["Event", "Timeline", "simulate", "unit_compute_s"]
