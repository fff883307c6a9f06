"""Partition maps are drawn for whole-layer and split plans; shares are read right."""

from __future__ import annotations

import edgeweave as ew
from edgeweave.report import partition_map
from edgeweave.report.partition_map import _share
from edgeweave.units import Region
from tests.conftest import zoo_graph


def test_a_region_covers_its_share_of_the_first_dimension_it_divides():
    shape = (1, 8, 40, 40)
    assert _share(Region.full(shape), shape) == (0.0, 1.0)
    assert _share(Region.full(shape).along(2, 10, 20), shape) == (0.25, 0.5)
    assert _share(Region.full(shape).along(1, 2, 4), shape) == (0.25, 0.5)


def test_maps_of_a_cut_and_of_a_split_plan(tmp_path):
    graphs = [zoo_graph("line"), zoo_graph("two_branch")]
    for planner in ("neurosurgeon", "edgeflow"):
        made = ew.plan(graphs, "rpi4b*3@ethernet", planner=planner)
        path = partition_map(made, tmp_path / f"{planner}.png", model="two_branch")
        assert path.read_bytes()[:4] == b"\x89PNG"
