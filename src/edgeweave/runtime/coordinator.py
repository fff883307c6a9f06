"""The coordinator of the message protocol that the local backend (and the ray backend's
``messages`` mode) speak: it feeds each frame's inputs to its models' source devices,
collects the workers' reports, tells them when a frame is complete, and re-plans around a
worker that is lost.

It does not care what carries the messages: it is handed ``send`` (to a device), an inbox
of ``(sender, message)`` pairs, and the ``Workers``, which say who was lost. The workers'
side is ``local_worker.Loop``.

It runs a stream: frames are drawn from ``backend.Frames`` as they fall due, at most
``in_flight`` beyond the last yielded; it holds only the open frames (fed, not yet out),
yields each frame's outputs in order once complete, and puts what it measured in a
``backend.Record``.

As in the simulator, a frame arrives when its inputs reach their source device (its worker
notes the moment as the message arrives, so that a camera attached to a device is not
charged the coordinator's hand-over) and is done when its outputs are back there: at once
when the source computed them, else when they reach the coordinator, which stands for the
source on the way back (later when an emulated link delivers them late).

A worker that is lost (dead, or silent for ``detect_s`` — or three times its longest
compute so far, if longer: a worker busy with a long unit on a loaded machine is slow, not
dead) has its units moved onto a survivor by ``planners.recover.without``; every survivor
switches to the new plan, re-sends the results it holds to units that moved, and the
adopter recomputes the lost units of every unfinished frame. If no survivor can hold the units, or a unit raises, the
run stops with an error naming the device and the frame.
"""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Protocol

from edgeweave.cost import CostModel
from edgeweave.errors import PlanError, WorkerError
from edgeweave.planners.recover import without
from edgeweave.runtime.backend import Frames, Record, collect_outputs
from edgeweave.runtime.worker import WARM_UP, Report, frame_outputs, unprompted
from edgeweave.units import Event, Plan


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
                 inbox, timeout_s: float, record: Record,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.plan, self.workers, self._send, self.inbox = plan, workers, send, inbox
        self.record = record
        self.devices = tuple(plan.order)
        self.timeout_s, self.clock = timeout_s, clock
        self.cost = CostModel.for_cluster(plan.cluster)
        self.expected = {(u.id, layer) for u in plan.units for layer in u.layers
                         if layer in plan.graphs[u.graph].outputs}
        self.unprompted = unprompted(plan)
        self.lost: set[str] = set()
        self.open: dict[int, _Open] = {}  # frames fed and not yet yielded
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

    def run(self, frames: Frames, interval_s: float | None, in_flight: int | None = None
            ) -> Iterator[dict[str, Any]]:
        """Feed ``frames`` at their times — each model's as its stream says, or
        ``interval_s`` apart, and at most ``in_flight`` ahead of the last frame yielded —
        and yield each frame's outputs by model, in order, as frames complete; what was
        measured goes to the record. A frame's state is dropped once it is yielded."""
        self.frames, record = frames, self.record
        self.send_inputs(WARM_UP)  # warms the input channels; the workers drop it
        start = self.clock()
        following = {model: 0 for model in self.plan.streams}  # each model's next frame
        yielded = 0
        progress = time.monotonic()
        while True:
            while yielded in self.open and self.open[yielded].closed:
                state = self.open.pop(yielded)
                record.complete({m: state.noted.get(m, sent) - start
                                 for m, sent in state.sent.items()},
                                {m: state.done.get(m, start) - start for m in state.sent})
                outputs = collect_outputs(self.plan, frame_outputs(self.plan, state.reports))
                yielded += 1
                frames.release(yielded)
                yield outputs
                progress = time.monotonic()
            while (due := self._due(frames, following, yielded, in_flight, start, interval_s)
                   ) is not None and due[0] <= self.clock():
                _, frame, model = due
                if not self.open:  # the wait for news starts with the first open frame
                    progress = time.monotonic()
                self.open.setdefault(frame, _Open()).sent[model] = self.clock()
                self.send_inputs(frame, model)
                self.send_open(frame, model)
                following[model] += 1
            if due is None and frames.ended and not self.open:
                return
            pending = min((f for f, state in self.open.items()
                           if len(state.received) < len(self.expected)), default=yielded)
            wait_s = 0.05 if due is None else min(due[0] - self.clock(), 0.05)
            message = self.receive(max(0.0, wait_s))
            self.check_workers(pending)
            # progress is news of an open frame, not any message: reports of frames not
            # fed (a worker running ahead) must not keep a stalled run alive
            if message is not None and message[0] == "report" and self._take(message[1], start):
                progress = time.monotonic()
            elif self.open and time.monotonic() - progress > self.timeout_s:
                raise WorkerError(f"No progress for {self.timeout_s:.0f} s on frame "
                                  f"{pending}: a worker stopped answering.")

    def _due(self, frames: Frames, following: dict[str, int], yielded: int,
             in_flight: int | None, start: float, interval_s: float | None
             ) -> tuple[float, int, str] | None:
        """The next (time, frame, model) whose inputs are to be fed, if any may be now or
        later: the earliest over the models whose next frame the stream has and the
        window allows."""
        streams = self.plan.streams
        candidates = [(start + streams[m].arrival_s(f, interval_s), f, m)
                      for m, f in following.items()
                      if (in_flight is None or f < yielded + in_flight) and frames.has(f)]
        return min(candidates, default=None)

    def _take(self, report: Report, start: float) -> bool:
        """Take a worker's report in: its outputs and events; close what it completes.
        Whether it brought news of an open frame (an output, or a device's last report)."""
        self.record.add_events(_shift(e, start) for e in report.events)
        for event in report.events:
            if event.kind == "compute":
                self.busy_s[event.resource] = max(self.busy_s.get(event.resource, 0.0),
                                                  event.end_s - event.start_s)
        state = self.open.get(report.frame)
        if state is None:
            return False  # a late copy for a frame already out
        state.reports.append(report)
        for model, at in report.arrived_s.items() if not state.resent else ():
            state.noted[model] = min(state.noted.get(model, at), at)
        news = report.last and report.device not in state.finals
        if report.last:
            state.finals.add(report.device)
        new = set(report.outputs) - state.received
        state.received |= new
        for model in {self.plan.unit(unit).graph for unit, _ in new}:
            state.done[model] = max(state.done.get(model, start), self.at_source(report, model))
        self._close(report.frame)
        return bool(news or new)

    def _close(self, frame: int) -> None:
        """When all of an open frame's outputs are in, and every live device with units has
        reported its last segment (its events are in), tell the workers to drop it."""
        state = self.open[frame]
        busy = {d for d in self.live if self.plan.order.get(d)}
        if not state.closed and len(state.received) == len(self.expected) and (
                busy <= state.finals):
            state.closed = True
            for device in self.live:
                self.send(device, ("done", frame))

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
        """Send a frame's inputs of ``model`` (of every model by default) to its source;
        the rehearsal's (``WARM_UP``) are the first frame's."""
        inputs = self.frames[max(frame, 0)]
        for unit in self.plan.units:
            if self.plan.is_input(unit.id) and model in (None, unit.graph):
                self.send(unit.device, ("input", frame, unit.graph, inputs[unit.graph]))

    def send_open(self, frame: int, model: str) -> None:
        """Tell the devices whose segments of ``model`` read nothing that ``frame`` is fed."""
        for device in sorted(self.unprompted.get(model, set()) - self.lost):
            self.send(device, ("open", frame, model))

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
        self.plan, self.unprompted = plan, unprompted(plan)
        for again, state in self.open.items():  # an adopted unit may read nothing
            for model in state.sent:
                self.send_open(again, model)
        if inputs_moved:
            for again, state in self.open.items():
                if again >= frame:
                    state.resent = True  # its latency counts from the first arrival
                    for model in state.sent:
                        self.send_inputs(again, model)
        for again in list(self.open):
            self._close(again)  # the lost device's last reports are no longer awaited
        self.record.faults.append(f"device '{device}' {what} during frame {frame}; its {len(moved)} "
                           f"unit(s) moved to '{adopter}' and unfinished frames recomputed"
                           if moved else f"device '{device}' {what}; it held no units")


@dataclasses.dataclass
class _Open:
    """A frame fed and not yet yielded: when each model's inputs were sent (and noted at
    their source), the reports, outputs and last reports in, each model's completion."""

    sent: dict[str, float] = dataclasses.field(default_factory=dict)
    noted: dict[str, float] = dataclasses.field(default_factory=dict)
    reports: list[Report] = dataclasses.field(default_factory=list)
    received: set = dataclasses.field(default_factory=set)
    finals: set[str] = dataclasses.field(default_factory=set)
    done: dict[str, float] = dataclasses.field(default_factory=dict)
    resent: bool = False  # inputs sent again after a fault: its arrival is the first
    closed: bool = False


def _shift(event: Event, start: float) -> Event:
    return dataclasses.replace(event, start_s=event.start_s - start, end_s=event.end_s - start)
