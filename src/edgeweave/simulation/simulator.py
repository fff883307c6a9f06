"""The discrete-event simulator: when each unit of each frame runs, predicted.

Rules. A unit lasts what the cost model says, plus its device's per-segment overhead
when it starts a segment (``units.segments``). A device runs one unit at a time, its
units in the plan's order, frame after frame (frame f+1's units queue behind frame f's). A unit starts when its device reaches it and
all its inputs are there. A finished unit sends each region its forwarding table names to
each other device that needs it — once per device, however many of its units read it. A
link carries one transfer at a time, first come first served, for ``8 * bytes /
bandwidth`` seconds, and the data arrives ``latency`` later; links on one shared medium
(a WiFi cell) are one resource. A frame's outputs computed elsewhere are sent back to the
device where its input arrived; the frame is done when all are there. Frame f arrives at
``f * interval_s``.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

from edgeweave.cost import CostModel
from edgeweave.errors import EdgeweaveError
from edgeweave.units import Event, Plan, Timeline, footprints, layer_regions
from edgeweave.units.timing import unit_times_s


def simulate(plan: Plan, frames: int = 1, interval_s: float = 0.0,
             cost: CostModel | None = None) -> Timeline:
    """Simulate ``frames`` frames through ``plan`` on its cluster; returns the timeline."""
    if frames < 1 or interval_s < 0:
        raise EdgeweaveError(f"frames must be >= 1 and interval_s >= 0; got {frames}, "
                             f"{interval_s}.")
    return _Run(plan, cost or CostModel.for_cluster(plan.cluster), frames, interval_s).go()


class _Run:
    def __init__(self, plan: Plan, cost: CostModel, frames: int, interval_s: float) -> None:
        self.plan, self.cost, self.frames = plan, cost, frames
        self.arrival = tuple(f * interval_s for f in range(frames))
        self.source = plan.cluster.devices[0].name
        self.duration = unit_times_s(plan, cost)
        self.queue = {d: [(f, uid) for f in range(frames) for uid in ids]
                      for d, ids in plan.order.items()}
        self.position = dict.fromkeys(self.queue, 0)
        self.device_free = dict.fromkeys(self.queue, 0.0)
        self.busy = dict.fromkeys(self.queue, False)
        self.waiting = {(f, u.id): len(u.needs) for f in range(frames) for u in plan.units}
        self.ready = {(f, u.id): self.arrival[f] for f in range(frames) for u in plan.units}
        self.medium_free: dict[str, float] = defaultdict(float)
        self.sent: dict[tuple, float] = {}
        self.events: list[Event] = []
        self.heap: list[tuple] = []
        self.counter = 0
        graphs = plan.graphs
        self.output_units = {u.id for u in plan.units
                             if any(layer in graphs[u.graph].outputs for layer in u.layers)}
        self.outputs_left = [len(self.output_units)] * frames
        self.done = [0.0] * frames

    def push(self, time: float, *action) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (time, self.counter, *action))

    def go(self) -> Timeline:
        for device in self.queue:
            self.try_start(device, 0.0)
        while self.heap:
            time, _, action, *args = heapq.heappop(self.heap)
            if action == "finish":
                self.finish(time, *args)
            else:  # an input arrived
                frame, unit_id = args
                self.waiting[frame, unit_id] -= 1
                self.ready[frame, unit_id] = max(self.ready[frame, unit_id], time)
                self.try_start(self.plan.unit(unit_id).device, time)
        if any(self.outputs_left):
            raise EdgeweaveError("The simulation stalled: some frame never completed.")
        footprint = {d: f.total_bytes for d, f in footprints(self.plan).items()}
        events = tuple(self.events)
        return Timeline(events, self.arrival, tuple(self.done), "simulated", footprint)

    def try_start(self, device: str, now: float) -> None:
        if self.busy[device] or self.position[device] >= len(self.queue[device]):
            return
        frame, unit_id = self.queue[device][self.position[device]]
        if self.waiting[frame, unit_id]:
            return
        start = max(now, self.device_free[device], self.ready[frame, unit_id])
        end = start + self.duration[unit_id]
        self.busy[device] = True
        self.events.append(Event("compute", frame, unit_id, device, start, end))
        self.push(end, "finish", frame, unit_id)

    def finish(self, time: float, frame: int, unit_id: str) -> None:
        unit = self.plan.unit(unit_id)
        self.device_free[unit.device], self.busy[unit.device] = time, False
        self.position[unit.device] += 1
        for consumer, need in self.plan.forwarding[unit_id]:
            target = self.plan.unit(consumer).device
            arrival = time if target == unit.device else self.send(
                time, frame, unit_id, unit.device, target, need.layer, need.region)
            self.push(arrival, "arrive", frame, consumer)
        if unit_id in self.output_units:
            graph = self.plan.graphs[unit.graph]
            back = time
            if unit.device != self.source:
                for layer, region in layer_regions(unit, graph).items():
                    if layer in graph.outputs:
                        back = max(back, self.send(time, frame, unit_id, unit.device,
                                                   self.source, layer, region))
            self.done[frame] = max(self.done[frame], back)
            self.outputs_left[frame] -= 1
        self.try_start(unit.device, time)

    def send(self, time, frame, unit_id, src, dst, layer, region) -> float:
        key = (frame, unit_id, dst, layer, region)
        if key not in self.sent:
            link = self.plan.cluster.link(src, dst)
            graph = self.plan.graphs[self.plan.unit(unit_id).graph]
            n_bytes = region.numel * graph[layer].itemsize
            medium = link.channel
            start = max(time, self.medium_free[medium])
            end = start + CostModel.occupancy_s(n_bytes, link)
            self.medium_free[medium] = end
            self.events.append(Event("transfer", frame, unit_id, f"{src}->{dst}", start,
                                     end + link.latency_s, n_bytes))
            self.sent[key] = end + link.latency_s
        return self.sent[key]
