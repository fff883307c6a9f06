"""Gantt charts are written for one model and for several."""

from __future__ import annotations

import edgeweave as ew
from edgeweave.report import gantt
from tests.conftest import zoo_graph


def test_gantt_of_one_and_of_two_models(tmp_path):
    graphs = [zoo_graph("line"), zoo_graph("two_branch")]
    plan = ew.plan(graphs, "rpi4b+edge-server@wifi", planner="remote")
    timeline = ew.simulate(plan, frames=2, interval_s=0.01)
    groups = {u.id: u.graph for u in plan.units}
    for name, mapping in (("frames.png", None), ("models.png", groups)):
        path = gantt([("remote", timeline), ("again", timeline)], tmp_path / "sub" / name,
                     mapping)
        assert path.read_bytes()[:4] == b"\x89PNG"
