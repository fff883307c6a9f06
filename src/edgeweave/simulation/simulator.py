"""The discrete-event simulator: when each unit of each frame runs, predicted.

Rules. A unit lasts what the cost model says, plus its device's per-segment overhead
when it starts a segment (``units.segments``). A device runs one unit at a time, its
units in the plan's order, frame after frame (frame f+1's units queue behind frame f's). A unit starts when its device reaches it and
all its inputs are there. A finished unit sends each region its forwarding table names to
each other device that needs it — once per device, however many of its units read it. A
link carries one transfer at a time, first come first served, for ``8 * bytes /
bandwidth`` seconds, and the data arrives ``latency`` later; links on one shared medium
(a WiFi cell) are one resource. A model's outputs computed elsewhere are sent back to its
source, the device where its input arrived (``Plan.sources``); the frame is done when all
are there. A model's frame f arrives when its stream says (``Plan.streams``:
``offset + f * period``, or its arrival times), or at ``f * interval_s`` when that is given.

Work stealing (``Plan.pool``, seed 003), the rules every backend follows. A stealable task
(a segment of stealable units, ``units.stealing``) waits in its home's queue like any
other unit; once all it reads from outside it is at the home it is *open*, and the home
offers work to each of its takers (a message: the link's latency). A device with nothing
to run — its next unit's inputs are missing, or its queue is done — that knows of homes
with open tasks asks one of them (round robin; the latency), and the home at once hands
over its first open task that device may take (frame by frame, in the home's order), with
what it reads as one transfer, or answers that it has none (the latency), which sends the
asker to the next home it knows. The taker runs the task's units back to back when it
arrives (its own units first when both are ready) and sends their results from there. The
home passes over tasks taken by others, or that it may not take itself, and runs the rest
when it reaches them, once they are open.
"""

from __future__ import annotations

import heapq
from collections import defaultdict

from edgeweave.cost import CostModel
from edgeweave.errors import EdgeweaveError
from edgeweave.units import (Event, Plan, Timeline, arrival_times, footprints, layer_regions,
                             objective_s)
from edgeweave.units.stealing import Pool, Thief, outside_needs, tasks, unshrunk
from edgeweave.units.timing import stack_compute_s, unit_compute_s, unit_times_s


MAX_UNIT_RUNS = 5_000_000  # a few GB of events


def simulate(plan: Plan, frames: int = 1, interval_s: float | None = None,
             cost: CostModel | None = None) -> Timeline:
    """Simulate ``frames`` rounds (a frame of each model) through ``plan`` on its cluster,
    each model's arriving as its stream says or ``interval_s`` apart; returns the
    timeline."""
    if frames < 1 or (interval_s is not None and interval_s < 0):
        raise EdgeweaveError(f"frames must be >= 1 and interval_s >= 0; got {frames}, "
                             f"{interval_s}.")
    if frames * len(plan.units) > MAX_UNIT_RUNS:  # the timeline keeps every event
        raise EdgeweaveError(f"Simulating {frames} frames of this plan's {len(plan.units)} "
                             f"units would keep {frames * len(plan.units):,} unit runs in "
                             f"memory; simulate at most {MAX_UNIT_RUNS // len(plan.units):,} "
                             "frames.")
    return _Run(plan, cost or CostModel.for_cluster(plan.cluster), frames, interval_s).go()


def predicted_s(plan: Plan, cost: CostModel | None = None) -> float:
    """What a planner minimises, simulated: the workload's objective
    (``units.workload.objective_s``) over the first frame of each model — with one model,
    or several arriving together, unweighted and without deadlines, its completion time."""
    timeline = simulate(plan, cost=cost)
    return objective_s({m: seconds[0] for m, seconds in timeline.model_latency_s().items()},
                       plan.streams)


class _Run:
    def __init__(self, plan: Plan, cost: CostModel, frames: int,
                 interval_s: float | None) -> None:
        self.plan, self.cost, self.frames = plan, cost, frames
        self.arrival = arrival_times(plan.streams, frames, interval_s)
        self.duration = unit_times_s(plan, cost)
        self.queue = {d: [(f, uid) for f in range(frames) for uid in plan.order.get(d, ())]
                      for d in plan.cluster.names}
        self.position = dict.fromkeys(self.queue, 0)
        self.device_free = dict.fromkeys(self.queue, 0.0)
        self.busy = dict.fromkeys(self.queue, False)
        self.waiting = {(f, u.id): len(u.needs) for f in range(frames) for u in plan.units}
        self.ready = {(f, u.id): self.arrival[u.graph][f] for f in range(frames)
                      for u in plan.units}
        self.medium_free: dict[str, float] = defaultdict(float)
        self.sent: dict[tuple, float] = {}
        self.events: list[Event] = []
        self.heap: list[tuple] = []
        self.counter = 0
        graphs = plan.graphs
        self.output_units = {u.id for u in plan.units
                             if any(layer in graphs[u.graph].outputs for layer in u.layers)}
        self.finished: set[tuple[int, str]] = set()
        self.done = {m: [0.0] * frames for m in plan.graphs}
        # work stealing: each home's pool, each device's asking side, tasks handed over
        self.tasks = tasks(plan)
        self.task_of = {uid: first for first, task in self.tasks.items() for uid in task.units}
        self.outside = {(f, first): len(outside_needs(plan, task)) for f in range(frames)
                        for first, task in self.tasks.items()}  # not yet at the home
        self.pools = {d: Pool(plan, d, self.tasks) for d in self.queue}
        self.thieves = {d: Thief(d) for d in self.queue}
        self.taken: dict[str, list[tuple[int, list[str]]]] = {d: [] for d in self.queue}
        self.runner: dict[tuple[int, str], str] = {}
        self.offered: set[tuple[str, str, float]] = set()
        # tasks that may run unshrunk: their stack, what feeds it, when that is at the home
        self.fallback = {first: unshrunk(plan, self.tasks[first]) for first in plan.fallback}
        self.stands_for = {stack.id: self.tasks[first].units[-1]
                           for first, stack in self.fallback.items()}
        self.feeds: dict[str, list[str]] = defaultdict(list)
        for first, stack in self.fallback.items():
            for need in stack.needs:
                self.feeds[need.unit].append(first)
        self.early_left = {(f, first): len(stack.needs) for f in range(frames)
                           for first, stack in self.fallback.items()}
        self.early_at = dict.fromkeys(self.early_left, 0.0)

    def push(self, time: float, *action) -> None:
        self.counter += 1
        heapq.heappush(self.heap, (time, self.counter, *action))

    def go(self) -> Timeline:
        for (frame, first), left in self.outside.items():
            if not left:
                self.push(self.arrival[self.plan.unit(first).graph][frame], "opened", frame,
                          first)
        for device in self.queue:
            self.try_start(device, 0.0)
        while self.heap:
            time, _, action, *args = heapq.heappop(self.heap)
            getattr(self, action)(time, *args)
        if len(self.finished) < self.frames * len(self.output_units):
            raise EdgeweaveError("The simulation stalled: some frame never completed.")
        footprint = {d: f.total_bytes for d, f in footprints(self.plan).items()}
        return Timeline.by_model(self.events, self.arrival, self.done, "simulated", footprint)

    def arrive(self, time: float, frame: int, unit_id: str, producer: str) -> None:
        self.waiting[frame, unit_id] -= 1
        self.ready[frame, unit_id] = max(self.ready[frame, unit_id], time)
        first = self.task_of.get(unit_id)
        if first is not None and self.task_of.get(producer) != first:
            self.outside[frame, first] -= 1
            if not self.outside[frame, first]:
                self.opened(time, frame, first)
                return
        self.try_start(self.plan.unit(unit_id).device, time)

    def try_start(self, device: str, now: float) -> None:
        if self.busy[device]:
            return
        taken = self.taken[device]
        if taken and taken[0][1][0] not in self.tasks and (
                taken[0][1][0] not in self.stands_for):  # a stolen task under way: go on
            self.run_taken(device, now)
            return
        queue, pool = self.queue[device], self.pools[device]
        while (self.position[device] < len(queue)
               and queue[self.position[device]][1] in self.task_of
               and pool.skips(queue[self.position[device]][0],
                              self.task_of[queue[self.position[device]][1]])):
            self.position[device] += 1
        if self.position[device] < len(queue):
            frame, unit_id = queue[self.position[device]]
            # a task starts once all it reads from outside is here, as a whole segment does
            if not self.waiting[frame, unit_id] and (
                    unit_id not in self.tasks or (not self.outside[frame, unit_id]
                                                  and pool.claim(frame, unit_id))):
                start = max(now, self.device_free[device], self.ready[frame, unit_id])
                self.start(device, frame, unit_id, start, self.duration[unit_id])
                return
            if (unit_id in self.fallback and self.outside[frame, unit_id]
                    and pool.claim_unshrunk(frame, unit_id)):  # its strips are late
                stack = self.fallback[unit_id]
                start = max(now, self.device_free[device], self.early_at[frame, unit_id])
                self.start(device, frame, stack.id, start, self.stack_s(stack, device))
                return
        if taken:
            self.run_taken(device, now)
            return
        home = self.thieves[device].ask()
        if home is not None:
            self.push(now + self.plan.cluster.link(device, home).latency_s, "steal", home,
                      device)

    def run_taken(self, device: str, now: float) -> None:
        """The next unit of the stolen task ``device`` runs, back to back as one segment."""
        frame, units = self.taken[device][0]
        unit_id = units.pop(0)
        if not units:
            self.taken[device].pop(0)
        if unit_id in self.stands_for:
            seconds = self.stack_s(self.fallback[self.task_of[self.stands_for[unit_id]]],
                                   device)
        else:
            seconds = unit_compute_s(self.plan, self.cost, unit_id, on=device) + (
                self.plan.cluster.device(device).segment_overhead_s if unit_id in self.tasks
                else 0.0)
        self.start(device, frame, unit_id, max(now, self.device_free[device]), seconds)

    def stack_s(self, stack, device: str) -> float:
        """A task run unshrunk, as one segment on ``device``."""
        return (stack_compute_s(self.plan, self.cost, stack, on=device)
                + self.plan.cluster.device(device).segment_overhead_s)

    def start(self, device: str, frame: int, unit_id: str, start: float, seconds: float
              ) -> None:
        self.busy[device] = True
        self.runner[frame, unit_id] = device
        self.events.append(Event("compute", frame, unit_id, device, start, start + seconds))
        self.push(start + seconds, "finish", frame, unit_id)

    def finish(self, time: float, frame: int, unit_id: str) -> None:
        runner = self.runner[frame, unit_id]
        unit_id = self.stands_for.get(unit_id, unit_id)  # an unshrunk task: its last unit
        unit = self.plan.unit(unit_id)
        self.device_free[runner], self.busy[runner] = time, False
        if runner == unit.device:
            self.position[runner] += 1
        for consumer, need in self.plan.forwarding[unit_id]:
            target = self.where(frame, consumer)
            arrival = time if target == runner else self.send(
                time, frame, unit_id, runner, target, need.layer, need.region)
            self.push(arrival, "arrive", frame, consumer, unit_id)
        if unit_id in self.output_units:
            graph = self.plan.graphs[unit.graph]
            back, source = time, self.plan.sources[unit.graph]
            if runner != source:
                for layer, region in layer_regions(unit, graph).items():
                    if layer in graph.outputs:
                        back = max(back, self.send(time, frame, unit_id, runner, source,
                                                   layer, region))
            self.done[unit.graph][frame] = max(self.done[unit.graph][frame], back)
            self.finished.add((frame, unit_id))
        for first in self.feeds.get(unit_id, ()):  # what a task needs to run unshrunk
            self.early_left[frame, first] -= 1
            self.early_at[frame, first] = max(self.early_at[frame, first], time)
            if not self.early_left[frame, first]:
                self.early(time, frame, first)
        self.try_start(runner, time)

    # -- work stealing --------------------------------------------------------------------
    def where(self, frame: int, unit_id: str) -> str:
        """Where a unit runs: its task's taker once taken, else its planned device."""
        first, planned = self.task_of.get(unit_id), self.plan.unit(unit_id).device
        if first is None:
            return planned
        return self.pools[self.plan.unit(first).device].owner.get((frame, first), planned)

    def opened(self, time: float, frame: int, unit_id: str) -> None:
        home = self.plan.unit(unit_id).device
        new = self.pools[home].opened(frame, [unit_id])
        for taker in self.plan.pool[unit_id] if new else ():
            if taker != home and (home, taker, time) not in self.offered:
                self.offered.add((home, taker, time))
                self.push(time + self.plan.cluster.link(home, taker).latency_s, "offer",
                          taker, home)
        self.try_start(home, time)

    def early(self, time: float, frame: int, unit_id: str) -> None:
        """A task can run unshrunk: offered as when it opens."""
        home = self.plan.unit(unit_id).device
        if self.pools[home].arrived(frame, [unit_id]):
            for taker in self.plan.pool[unit_id]:
                if taker != home and (home, taker, time) not in self.offered:
                    self.offered.add((home, taker, time))
                    self.push(time + self.plan.cluster.link(home, taker).latency_s, "offer",
                              taker, home)
        self.try_start(home, time)

    def offer(self, time: float, taker: str, home: str) -> None:
        self.thieves[taker].offered(home)
        self.try_start(taker, time)

    def steal(self, time: float, home: str, taker: str) -> None:
        given = self.pools[home].take(taker)
        if given is None:
            self.push(time + self.plan.cluster.link(home, taker).latency_s, "empty", taker,
                      home)
            return
        (frame, first), whole = given
        task = self.tasks[first]
        graph = self.plan.graphs[self.plan.unit(first).graph]
        needs = self.fallback[first].needs if whole else outside_needs(self.plan, task)
        n_bytes = sum(n.region.numel * graph[n.layer].itemsize for n in needs)
        arrival = self.occupy(time, frame, task.units[-1], home, taker, n_bytes)
        self.push(arrival, "handed", taker, home, frame, first, whole)

    def handed(self, time: float, taker: str, home: str, frame: int, first: str,
               whole: bool) -> None:
        self.thieves[taker].answered(home, empty=False)
        self.taken[taker].append((frame, [self.fallback[first].id] if whole
                                  else list(self.tasks[first].units)))
        self.try_start(taker, time)

    def empty(self, time: float, taker: str, home: str) -> None:
        self.thieves[taker].answered(home, empty=True)
        self.try_start(taker, time)

    # -- links ----------------------------------------------------------------------------
    def send(self, time, frame, unit_id, src, dst, layer, region) -> float:
        key = (frame, unit_id, dst, layer, region)
        if key not in self.sent:
            graph = self.plan.graphs[self.plan.unit(unit_id).graph]
            self.sent[key] = self.occupy(time, frame, unit_id, src, dst,
                                         region.numel * graph[layer].itemsize)
        return self.sent[key]

    def occupy(self, time: float, frame: int, unit_id: str, src: str, dst: str,
               n_bytes: int) -> float:
        """Carry ``n_bytes`` from ``src`` to ``dst`` once the medium is free: the arrival."""
        link = self.plan.cluster.link(src, dst)
        start = max(time, self.medium_free[link.channel])
        end = start + CostModel.occupancy_s(n_bytes, link)
        self.medium_free[link.channel] = end
        self.events.append(Event("transfer", frame, unit_id, f"{src}->{dst}", start,
                                 end + link.latency_s, n_bytes))
        return end + link.latency_s
