"""The simulator against timelines computed by hand, and the baselines' ordering.

Devices compute 1 GFLOP/s with no overhead (memory traffic is made negligible); links move
1 MB/s (8 Mbit/s) with 1 ms latency. A Linear(100, 200) costs 2*100*200 FLOPs = 40 us,
its 200-float output (800 B) takes 0.8 ms on the wire and arrives 1 ms later.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import edgeweave as ew
from edgeweave.errors import EdgeweaveError
from edgeweave.planners import plan
from edgeweave.simulation import simulate
from edgeweave.units import Event
from edgeweave.units import build_plan, whole
from tests.conftest import zoo_graph

DEVICE = {"flops_per_s": 1e9, "memory_bytes_per_s": 1e18, "layer_overhead_s": 0.0,
          "memory_bytes": 1e9}


def _cluster(names, shared: bool):
    return ew.Cluster.load({"devices": [{"name": n, **DEVICE} for n in names],
                            "network": {"bandwidth_bps": 8e6, "latency_s": 1e-3,
                                        "shared": shared}})


class _Fork(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = nn.Linear(100, 200), nn.Linear(100, 200)

    def forward(self, x):
        return torch.cat([self.left(x), self.right(x)], 1)


def _log(timeline):
    return [(e.kind, e.frame, e.unit, e.resource, e.start_s, e.end_s, e.n_bytes)
            for e in timeline.events]


def _approx(rows):
    return [(*row[:4], pytest.approx(row[4], abs=1e-12), pytest.approx(row[5], abs=1e-12),
             row[6]) for row in rows]


def _chain_plan(frames_cluster=("A", "B")):
    model = nn.Sequential(nn.Linear(100, 200), nn.ReLU(), nn.Linear(200, 10)).eval()
    graph = ew.trace(model, torch.zeros(1, 100), name="chain")
    cluster = _cluster(frames_cluster, shared=False)
    parts = [whole(graph, "_0", "A"), whole(graph, "_1", "B"), whole(graph, "_2", "B")]
    return build_plan({"chain": graph}, cluster, parts)


def test_a_chain_on_two_devices():
    timeline = simulate(_chain_plan())
    t1 = 40e-6
    t2 = t1 + 0.8e-3 + 1e-3
    t3 = t2 + 0.2e-6
    t4 = t3 + 4e-6
    assert _log(timeline) == _approx([
        ("compute", 0, "u0", "A", 0.0, 0.0, 0),
        ("compute", 0, "u1", "A", 0.0, t1, 0),
        ("transfer", 0, "u1", "A->B", t1, t2, 800),
        ("compute", 0, "u2", "B", t2, t3, 0),
        ("compute", 0, "u3", "B", t3, t4, 0),
        ("transfer", 0, "u3", "B->A", t4, t4 + 40 * 8 / 8e6 + 1e-3, 40),
    ])
    assert timeline.latency_s == pytest.approx((t4 + 40e-6 + 1e-3,))
    assert timeline.bytes_moved() == {"A->B": 800, "B->A": 40}
    assert timeline.busy_s() == pytest.approx({"A": t1, "B": t3 - t2 + 4e-6})


@pytest.mark.parametrize("shared", [True, False])
def test_two_transfers_contend_on_a_shared_medium(shared):
    graph = ew.trace(_Fork().eval(), torch.zeros(1, 100), name="fork")
    cluster = _cluster(("A", "B", "C"), shared)
    parts = [whole(graph, "left", "B"), whole(graph, "right", "C"), whole(graph, "cat", "A")]
    timeline = simulate(build_plan({"fork": graph}, cluster, parts))
    sends = [e for e in timeline.events if e.kind == "transfer" and e.unit == "u0"]
    wire = 400 * 8 / 8e6
    second = wire if shared else 0.0  # one WiFi cell carries one transfer at a time
    assert [(e.resource, e.start_s, e.end_s) for e in sends] == [
        ("A->B", 0.0, pytest.approx(wire + 1e-3)),
        ("A->C", pytest.approx(second), pytest.approx(second + wire + 1e-3))]


def test_two_frames_pipeline():
    timeline = simulate(_chain_plan(), frames=2)
    on_a = [(e.frame, e.start_s, e.end_s) for e in timeline.events
            if e.resource == "A" and e.unit == "u1"]
    assert on_a == [(0, 0.0, pytest.approx(40e-6)), (1, pytest.approx(40e-6),
                                                     pytest.approx(80e-6))]
    sends = [(e.frame, e.start_s, e.end_s) for e in timeline.events if e.resource == "A->B"]
    # frame 1's send waits for the wire, not for frame 0's latency
    assert sends == [(0, pytest.approx(40e-6), pytest.approx(1.84e-3)),
                     (1, pytest.approx(0.84e-3), pytest.approx(2.64e-3))]
    assert timeline.makespan_s < 2 * timeline.latency_s[0]


def test_interval_and_event_text_form():
    timeline = simulate(_chain_plan(), frames=3, interval_s=0.5)
    assert timeline.arrival_s == (0.0, 0.5, 1.0)
    assert timeline.latency_s == pytest.approx((timeline.latency_s[0],) * 3)
    event = timeline.events[2]
    assert Event.parse(repr(event)).unit == event.unit
    assert repr(event) == "transfer f0 u1 A->B 0.000040-0.001840 800B"
    with pytest.raises(EdgeweaveError, match="frames must be >= 1"):
        simulate(_chain_plan(), frames=0)
    with pytest.raises(EdgeweaveError, match="would keep .* unit runs in memory; simulate at "
                                             "most"):
        simulate(_chain_plan(), frames=10**7)


@pytest.mark.parametrize("model", ["resnet18", "googlenet", "siamese", "yolov5s"])
@pytest.mark.parametrize("network", ["3g", "4g", "wifi"])
def test_neurosurgeon_never_worse_than_local_or_remote(model, network):
    graph = zoo_graph(model)
    cluster = f"rpi4b+edge-server@{network}"
    latency = {name: simulate(plan(graph, cluster, planner=name)).latency_s[0]
               for name in ("local", "remote", "neurosurgeon")}
    assert latency["neurosurgeon"] <= min(latency["local"], latency["remote"]) * (1 + 1e-9)
