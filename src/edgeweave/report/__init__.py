"""Pictures and traces of plans and timelines."""

from edgeweave.report.gantt import gantt
from edgeweave.report.partition_map import partition_map
from edgeweave.report.trace import chrome_trace

__all__ = ["chrome_trace", "gantt", "partition_map"]
