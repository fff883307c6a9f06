"""The coordinator of the message protocol that the local backend (and the ray backend's
``messages`` mode) speak: it feeds each frame's inputs to its models' source devices,
collects the workers' reports, tells them when a frame is complete, and re-plans around a
worker that is lost.

It does not care what carries the messages: it is handed ``send`` (to a device), an inbox
of ``(sender, message)`` pairs, and the ``Workers``, which say who was lost. The workers'
side is ``local_worker.Loop``.

As in the simulator, a frame arrives when its inputs reach their source device (its worker
notes the moment as the message arrives, so that a camera attached to a device is not
charged the coordinator's hand-over) and is done when its outputs are back there: at once
when the source computed them, else when they reach the coordinator, which stands for the
source on the way back (later when an emulated link delivers them late).

A worker that is lost (dead, or silent for ``detect_s`` — or three times its longest
compute so far, if longer: a worker busy with a long unit on a loaded machine is slow, not
dead) has its units moved onto a
survivor by ``planners.recover.without``; every survivor switches to the new plan,
re-sends the results it holds to units that moved, and the adopter recomputes the lost
units of every unfinished frame. If no survivor can hold the units, or a unit raises, the
run stops with an error naming the device and the frame.
"""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from edgeweave.cost import CostModel
from edgeweave.errors import PlanError, WorkerError
from edgeweave.planners.recover import without
from edgeweave.runtime.backend import Measured, collect_outputs
from edgeweave.runtime.worker import WARM_UP, Report, frame_outputs
from edgeweave.units import Event, Plan, Timeline, arrival_times


class Workers(Protocol):
    """The workers as the coordinator sees them."""

    hint: str  # added to an error before the first frame: what may have gone wrong

    def lost(self, devices: Collection[str], frozen: bool,
             busy_s: Mapping[str, float] = {}) -> list[tuple[str, str]]:
        """(device, what happened) for each of ``devices`` whose worker died, or (when
        ``frozen``) stopped answering for ``detect_s`` — or for three times its longest
        compute so far (``busy_s``), if longer — then killed, to be sure."""
        ...


def patience_s(detect_s: float, busy_s: float) -> float:
    """How long a worker may be silent before it counts as frozen: ``detect_s``, or three
    times the longest compute it has run, if longer."""
    return max(detect_s, 3.0 * busy_s)


class Coordinator:
    """Feeds frames to the workers of ``plan`` and collects what they report."""

    def __init__(self, plan: Plan, workers: Workers, send: Callable[[str, tuple], None],
                 inbox, timeout_s: float, clock: Callable[[], float] = time.perf_counter
                 ) -> None:
        self.plan, self.workers, self._send, self.inbox = plan, workers, send, inbox
        self.devices = tuple(plan.order)
        self.timeout_s, self.clock = timeout_s, clock
        self.cost = CostModel.for_cluster(plan.cluster)
        self.expected = {(u.id, layer) for u in plan.units for layer in u.layers
                         if layer in plan.graphs[u.graph].outputs}
        self.faults: list[str] = []
        self.lost: set[str] = set()
        self.resent: set[int] = set()  # frames whose inputs were sent again after a fault
        self.busy_s: dict[str, float] = {}  # each device's longest compute so far

    def send(self, device: str, message: tuple) -> None:
        self._send(device, message)  # a dead worker is found by check_workers

    def receive(self, wait_s: float):
        """The next message, or None after ``wait_s``; a worker's error is raised."""
        try:
            sender, message = self.inbox.get(timeout=wait_s)
        except queue.Empty:
            return None
        if message is not None and message[0] == "error":
            raise WorkerError(message[1])
        return message

    def wait_ready(self) -> None:
        """Wait until every worker has loaded its plan and rehearsed it."""
        ready: set[str] = set()
        deadline = time.monotonic() + self.timeout_s
        while ready != set(self.devices):
            message = self.receive(0.2)
            for device, what in self.workers.lost(self.devices, frozen=False):
                raise WorkerError(f"The worker of device '{device}' {what} before the first "
                                  "frame, loading its plan or rehearsing it on zeros."
                                  + self.workers.hint)
            if time.monotonic() > deadline:
                who = sorted(set(self.devices) - ready)[0]
                raise WorkerError(f"The worker of device '{who}' did not start within "
                                  f"{self.timeout_s:.0f} s.")
            if message is not None and message[0] == "ready":
                ready.add(message[1])

    def run(self, frames, interval_s: float | None, source: str, on_frame) -> Measured:
        """Feed ``frames`` (each model's inputs of each round) at their times — each model's
        as its stream says, or ``interval_s`` apart — and collect their outputs and
        timeline (whose source is ``source``)."""
        self.frames = {WARM_UP: frames[0], **dict(enumerate(frames))}
        self.send_inputs(WARM_UP)  # warms the input channels; the workers drop it
        start = self.clock()
        due = arrival_times(self.plan.streams, len(frames), interval_s)
        arrival = {m: [start + s for s in seconds] for m, seconds in due.items()}
        schedule = sorted((s, f, m) for m, seconds in due.items() for f, s in enumerate(seconds))
        reports: list[list[Report]] = [[] for _ in frames]
        received: list[set] = [set() for _ in frames]
        finals: list[set] = [set() for _ in frames]  # devices whose last report is in
        done = {m: [start] * len(frames) for m in self.plan.graphs}
        noted: dict[tuple[int, str], float] = {}  # when a model's inputs reached its source
        closed: set[int] = set()  # complete frames, whose data the workers were told to drop
        self.fed: list[tuple[int, str]] = []  # (frame, model) whose inputs were sent
        progress = time.monotonic()
        while len(closed) < len(frames):
            while len(self.fed) < len(schedule) and (
                    self.clock() >= start + schedule[len(self.fed)][0]):
                _, frame, model = schedule[len(self.fed)]
                arrival[model][frame] = self.clock()
                self.send_inputs(frame, model)
                self.fed.append((frame, model))
            pending = next((f for f in range(len(frames)) if len(received[f]) < len(
                self.expected)), len(frames) - 1)
            next_arrival = (start + schedule[len(self.fed)][0] if len(self.fed) < len(schedule)
                            else float("inf"))
            message = self.receive(max(0.0, min(next_arrival - self.clock(), 0.05)))
            self.check_workers(pending)
            if message is None:
                if time.monotonic() - progress > self.timeout_s:
                    raise WorkerError(f"No progress for {self.timeout_s:.0f} s on frame "
                                      f"{pending}: a worker stopped answering.")
                continue
            progress = time.monotonic()
            if message[0] != "report":
                continue
            report: Report = message[1]
            frame = report.frame
            for event in report.events:
                if event.kind == "compute":
                    self.busy_s[event.resource] = max(self.busy_s.get(event.resource, 0.0),
                                                      event.end_s - event.start_s)
            reports[frame].append(report)
            if frame not in self.resent:
                for model, at in report.arrived_s.items():
                    noted[frame, model] = min(noted.get((frame, model), at), at)
            if report.last:
                finals[frame].add(report.device)
            new = set(report.outputs) - received[frame]
            received[frame] |= new
            for model in {self.plan.unit(unit).graph for unit, _ in new}:
                done[model][frame] = max(done[model][frame], self.at_source(report, model))
            if new and len(received[frame]) == len(self.expected) and on_frame is not None:
                on_frame(frame)
            for f in range(len(frames)):
                if f not in closed and self._complete(f, received, finals):
                    closed.add(f)
                    for device in self.live:
                        self.send(device, ("done", f))
        outputs = [collect_outputs(self.plan, frame_outputs(self.plan, r)) for r in reports]
        events = tuple(dict.fromkeys(_shift(e, start) for r in reports for report in r
                                     for e in report.events))
        timeline = Timeline.by_model(
            events, {m: [noted.get((f, m), sent) - start for f, sent in enumerate(times)]
                     for m, times in arrival.items()},
            {m: [d - start for d in times] for m, times in done.items()}, source)
        return Measured(outputs, timeline, tuple(self.faults))

    def _complete(self, frame: int, received, finals) -> bool:
        """All outputs in, and every live device with units has reported its last segment
        (its events are in)."""
        busy = {d for d in self.live if self.plan.order.get(d)}
        return len(received[frame]) == len(self.expected) and busy <= finals[frame]

    @property
    def live(self) -> list[str]:
        return [device for device in self.devices if device not in self.lost]

    def at_source(self, report: Report, graph: str) -> float:
        """When a report's outputs of model ``graph`` are back at its source device: as
        computed when that is where they were computed, else when they reach the
        coordinator, which stands for the source (or later, by an emulated link)."""
        if report.device == self.plan.sources[graph]:
            return report.due_s
        return max(report.due_s, self.clock())

    def send_inputs(self, frame: int, model: str | None = None) -> None:
        """Send a frame's inputs of ``model`` (of every model by default) to its source."""
        for unit in self.plan.units:
            if self.plan.is_input(unit.id) and model in (None, unit.graph):
                self.send(unit.device,
                          ("input", frame, unit.graph, self.frames[frame][unit.graph]))

    def check_workers(self, frame: int) -> None:
        for device, what in self.workers.lost(self.live, frozen=True, busy_s=self.busy_s):
            self.recover(device, what, frame)

    def recover(self, device: str, what: str, frame: int) -> None:
        self.lost.add(device)
        moved = self.plan.order[device]
        try:
            plan = without(self.plan, self.lost, self.cost)
        except PlanError as error:
            raise WorkerError(f"The worker of device '{device}' {what} while computing frame "
                              f"{frame}, and the run cannot go on: {error}") from None
        adopter = plan.unit(moved[0]).device if moved else None
        for survivor in self.live:
            graphs = plan.for_device(survivor).graphs if survivor == adopter else None
            self.send(survivor, ("replan", plan.units, plan.order, graphs, frame, device))
        inputs_moved = any(self.plan.is_input(uid) for uid in moved)
        self.plan = plan
        if inputs_moved:
            for again, model in self.fed:
                if again >= frame:
                    self.resent.add(again)  # its latency counts from the first arrival
                    self.send_inputs(again, model)
        self.faults.append(f"device '{device}' {what} during frame {frame}; its {len(moved)} "
                           f"unit(s) moved to '{adopter}' and unfinished frames recomputed"
                           if moved else f"device '{device}' {what}; it held no units")


def _shift(event: Event, start: float) -> Event:
    return dataclasses.replace(event, start_s=event.start_s - start, end_s=event.end_s - start)
