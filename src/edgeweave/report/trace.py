"""Timelines as a Chrome trace (the JSON that Perfetto and chrome://tracing open): one
process per timeline (predicted, measured), one thread per device or link."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeweave.units import Timeline


def chrome_trace(timelines: Sequence[tuple[str, Timeline]], path: str | Path) -> Path:
    """Write the (title, timeline) pairs as one Chrome trace file at ``path``."""
    records: list[dict[str, Any]] = []
    for pid, (title, timeline) in enumerate(timelines):
        records.append({"ph": "M", "name": "process_name", "pid": pid,
                        "args": {"name": f"{title} ({timeline.source})"}})
        lanes = sorted({e.resource for e in timeline.events})
        for tid, lane in enumerate(lanes):
            records.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                            "args": {"name": lane}})
        for event in timeline.events:
            records.append({"ph": "X", "name": event.unit, "cat": event.kind, "pid": pid,
                            "tid": lanes.index(event.resource), "ts": event.start_s * 1e6,
                            "dur": (event.end_s - event.start_s) * 1e6,
                            "args": {"frame": event.frame, "bytes": event.n_bytes}})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"traceEvents": records, "displayTimeUnit": "ms",
                                "metadata": {t: tl.metrics() for t, tl in timelines}}))
    return path
