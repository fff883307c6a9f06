"""Calibration for the local backend: a cluster every planner plans with unchanged, that
prices segments, hops and every layer, split bands included.

How close its predictions come to real runs is a benchmark's question, not a test's
(tests must not depend on the speed of a loaded machine): ``bench/calibrated.py`` measures
it on a quiet machine, docs/benchmarks.md.
"""

from __future__ import annotations

import pytest

import edgeweave as ew
from edgeweave.cost import CostModel
from edgeweave.planners import PLANNERS
from tests.conftest import zoo_graph, zoo_model


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    graph = zoo_graph("two_branch")
    return graph, ew.calibrate(graph, zoo_model("two_branch")[1],
                               ew.Cluster.load("x86-core*2@ethernet"), "local", False, 1,
                               tmp_path_factory.mktemp("profiles"))


def test_the_calibrated_cluster_prices_segments_hops_and_every_layer(calibrated):
    graph, cluster = calibrated
    assert all(d.segment_overhead_s > 0 and d.profile for d in cluster.devices)
    assert all(link.latency_s > 0 for link in cluster.links)
    cost = CostModel.for_cluster(cluster)
    for device in cluster.devices:
        profile = cost.profiles[device.name][graph.fingerprint]
        assert set(profile.layer_s) == {layer.name for layer in graph}
        assert profile.fixed_s, "the split bands were timed"
        assert all(profile.fixed_s[n] >= 0.0 for n in profile.fixed_s)
    for planner in PLANNERS:  # every planner plans with it unchanged
        assert ew.simulate(ew.plan(graph, cluster, planner=planner)).latency_s[0] > 0
