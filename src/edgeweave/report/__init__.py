"""Pictures and tables of plans and timelines."""

from edgeweave.report.gantt import gantt

__all__ = ["gantt"]
