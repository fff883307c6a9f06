"""What a local worker emulates of its cluster: the links' occupancy, shared by all the
workers' processes, and the cost model's compute times as a floor under each step."""

from __future__ import annotations

from collections.abc import Mapping

from edgeweave.cost import CostModel
from edgeweave.units import Plan


class Emulation:
    """What a worker emulates: each link's (or shared medium's) clock, given as
    ``channel -> (free_at value, lock)`` that all workers share, and the cost model's compute
    time as a lower bound on each step (``compute``)."""

    def __init__(self, media: Mapping | None = None, compute: bool = False) -> None:
        self.media, self.compute = media or {}, compute

    def label(self) -> str:
        """How the timeline's source names what was emulated."""
        parts = (["emulated links"] if self.media else []) + (
            ["emulated compute"] if self.compute else [])
        return f", {' and '.join(parts)}" if parts else ""

    def transfer(self, plan: Plan, src: str, dst: str, n_bytes: int, now: float
                 ) -> tuple[float, float]:
        """Occupy the link from ``src`` to ``dst``: (start, delivery time)."""
        if not self.media or src == dst:
            return now, now
        link = plan.cluster.link(src, dst)
        free_at, lock = self.media[link.channel]
        with lock:  # the clock is shared with other processes: read and move it together
            start = max(now, free_at.value)
            end = start + CostModel.occupancy_s(n_bytes, link)
            free_at.value = end
        return start, end + link.latency_s
