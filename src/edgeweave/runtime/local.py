"""The local backend: one OS process per device on this machine, each a ``DeviceWorker``.

Each worker holds the plan as its device sees it (``Plan.for_device``: only its own
layers' weights) and runs its segments in the plan's order, frame after frame, with its
own torch thread budget (the device's ``threads``, default 1). Tensors go device to device,
never through the coordinator, over **one pipe per ordered pair of processes**, each with
its own shared-memory ring for tensors (``runtime.pipes``): a process killed in the middle
of a send can only spoil its own pipes, which its peers then drop, so no other channel can
wedge. A reader thread per incoming pipe drains it into the worker's inbox, so a send
never waits on a busy receiver. Liveness is a heartbeat each worker writes
into shared memory. Workers stamp events with the machine's monotonic clock, shared by all
processes here; events travel with the segment reports, not one message per unit.

The coordinator feeds each frame's inputs to its models' source devices (``Plan.sources``,
the input units' devices) and collects the model outputs. As in the simulator, a frame
arrives when its inputs reach their source device (its worker notes the moment on the
reader thread, so that a camera attached to a device is not charged the coordinator's
hand-over) and is done when its outputs are back there: at once when the source computed
them, else when they reach the coordinator, which stands for the source on the way back
(later when an emulated link delivers them late).

Each worker is a loop around its device's ``DeviceWorker`` (``runtime.local_worker``), which
also steals stealable units (``Plan.pool``) from their homes as ``units.stealing`` says.

Faults are survived: a worker keeps what it computed until the coordinator says the frame
is complete. A worker whose process dies, or whose heartbeat stops for ``detect_s``, is
killed; ``planners.recover.without`` moves its units onto a survivor; every survivor
switches to the new plan, re-sends the results it holds to units that moved, and the
adopter recomputes the lost units of every unfinished frame. If no survivor can hold the
units, or a unit raises, the run stops with an error naming the device and the frame.
"""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Callable, Sequence

import torch
import torch.multiprocessing as mp

from edgeweave.cost import CostModel
from edgeweave.errors import PlanError, WorkerError
from edgeweave.planners.recover import without
from edgeweave.runtime.backend import LocalOptions, Measured, collect_outputs
from edgeweave.runtime.local_worker import COORDINATOR, serve
from edgeweave.runtime.pipes import Sender, read_into
from edgeweave.runtime.emulation import Emulation
from edgeweave.runtime.worker import WARM_UP, Report, frame_outputs
from edgeweave.units import Event, Plan, Timeline


def execute(plan: Plan, frames: Sequence[dict[str, tuple[torch.Tensor, ...]]],
            interval_s: float = 0.0, timeout_s: float = 60.0,
            on_frame: Callable[[int], None] | None = None,
            options: LocalOptions = LocalOptions()) -> Measured:
    """Run ``frames`` (inputs by model, per frame) through ``plan`` in worker processes."""
    context = mp.get_context("spawn")
    names = [COORDINATOR, *plan.order]
    pipes = {(a, b): context.Pipe(duplex=False) for a in names for b in names if a != b}
    beats = context.Array("d", len(plan.order), lock=False)
    media = {link.channel: (context.Value("d", 0.0), context.Lock())
             for link in plan.cluster.links} if options.emulate_links else {}
    emulation = Emulation(media, options.emulate_compute)
    workers = {}
    for index, device in enumerate(plan.order):
        inbound = {a: pipes[a, device][0] for a in names if a != device}
        outbound = {b: pipes[device, b][1] for b in names if b != device}
        workers[device] = context.Process(
            target=serve, name=f"edgeweave-{device}", daemon=True,
            args=(device, plan.for_device(device), inbound, outbound, emulation, beats, index))
    inbox: queue.Queue = queue.Queue()
    try:
        for process in workers.values():
            process.start()
        for (a, b), (reader, writer) in pipes.items():  # keep only the coordinator's ends
            if b != COORDINATOR:
                reader.close()
            if a != COORDINATOR:
                writer.close()
        for device in plan.order:
            read_into(pipes[device, COORDINATOR][0], device, inbox)
        senders = {device: Sender(pipes[COORDINATOR, device][1]) for device in plan.order}
        coordinator = _Coordinator(plan, workers, senders, inbox, beats, timeout_s,
                                   options.detect_s)
        coordinator.wait_ready()
        return coordinator.run(frames, interval_s, emulation.label(), on_frame)
    finally:
        for device in plan.order:
            try:
                pipes[COORDINATOR, device][1].send(("stop",))
            except (OSError, ValueError):
                pass  # that worker is gone
        for process in (p for p in workers.values() if p.pid is not None):
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join()
        for reader, writer in pipes.values():
            reader.close()
            writer.close()


class _Coordinator:
    def __init__(self, plan: Plan, workers, senders, inbox: queue.Queue, beats,
                 timeout_s: float, detect_s: float) -> None:
        self.plan, self.workers, self.senders, self.inbox = plan, workers, senders, inbox
        self.beats, self.index = beats, {device: i for i, device in enumerate(workers)}
        self.timeout_s, self.detect_s = timeout_s, detect_s
        self.cost = CostModel.for_cluster(plan.cluster)
        self.expected = {(u.id, layer) for u in plan.units for layer in u.layers
                         if layer in plan.graphs[u.graph].outputs}
        self.faults: list[str] = []
        self.lost: set[str] = set()
        self.resent: set[int] = set()  # frames whose inputs were sent again after a fault

    def send(self, device: str, message: tuple) -> None:
        self.senders[device].post(message)  # a dead worker is found by check_workers

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
        ready: set[str] = set()
        deadline = time.monotonic() + self.timeout_s
        while ready != set(self.workers):
            message = self.receive(0.2)
            dead = [d for d, p in self.workers.items() if not p.is_alive()]
            if dead:
                code = self.workers[dead[0]].exitcode
                raise WorkerError(f"The worker of device '{dead[0]}' died (exit code {code}) "
                                  "before the first frame, loading its plan or rehearsing it "
                                  "on zeros. Worker processes are spawned: a script that "
                                  "runs the local backend needs `if __name__ == '__main__':`.")
            if time.monotonic() > deadline:
                who = sorted(set(self.workers) - ready)[0]
                raise WorkerError(f"The worker of device '{who}' did not start within "
                                  f"{self.timeout_s:.0f} s.")
            if message is not None and message[0] == "ready":
                ready.add(message[1])

    def run(self, frames, interval_s: float, label: str, on_frame) -> Measured:
        self.frames = {WARM_UP: frames[0], **dict(enumerate(frames))}
        self.send_inputs(WARM_UP)  # warms the input pipes; the workers drop it
        start = time.perf_counter()
        arrival = [start + f * interval_s for f in range(len(frames))]
        reports: list[list[Report]] = [[] for _ in frames]
        received: list[set] = [set() for _ in frames]
        finals: list[set] = [set() for _ in frames]  # devices whose last report is in
        done = [0.0] * len(frames)
        noted: dict[int, float] = {}  # frame -> when its inputs reached a source device
        closed: set[int] = set()  # complete frames, whose data the workers were told to drop
        self.sent = 0
        progress = time.monotonic()
        while len(closed) < len(frames):
            while self.sent < len(frames) and time.perf_counter() >= arrival[self.sent]:
                arrival[self.sent] = time.perf_counter()
                self.send_inputs(self.sent)
                self.sent += 1
            pending = next((f for f in range(len(frames)) if len(received[f]) < len(
                self.expected)), len(frames) - 1)
            next_arrival = arrival[self.sent] if self.sent < len(frames) else float("inf")
            message = self.receive(max(0.0, min(next_arrival - time.perf_counter(), 0.05)))
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
            reports[frame].append(report)
            if report.arrived_s is not None and frame not in self.resent:
                noted[frame] = min(noted.get(frame, report.arrived_s), report.arrived_s)
            if report.last:
                finals[frame].add(report.device)
            new = set(report.outputs) - received[frame]
            received[frame] |= new
            if new:
                done[frame] = max(done[frame], self.at_source(report))
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
        arrival = [noted.get(f, sent) for f, sent in enumerate(arrival)]
        timeline = Timeline(events, tuple(a - start for a in arrival),
                            tuple(d - start for d in done),
                            f"measured: local backend, {len(self.workers)} processes{label}")
        return Measured(outputs, timeline, tuple(self.faults))

    def _complete(self, frame: int, received, finals) -> bool:
        """All outputs in, and every live device with units has reported its last segment
        (its events are in)."""
        busy = {d for d in self.live if self.plan.order.get(d)}
        return len(received[frame]) == len(self.expected) and busy <= finals[frame]

    @property
    def live(self) -> list[str]:
        return [device for device in self.workers if device not in self.lost]

    def at_source(self, report: Report) -> float:
        """When a report's model outputs are back at their model's source device: as
        computed when that is where they were computed, else when they reach this process,
        which stands for the source (or later, by an emulated link)."""
        graph = self.plan.unit(next(iter(report.outputs))[0]).graph
        if report.device == self.plan.sources[graph]:
            return report.due_s
        return max(report.due_s, time.perf_counter())

    def send_inputs(self, frame: int) -> None:
        for unit in self.plan.units:
            if self.plan.is_input(unit.id):
                self.send(unit.device,
                          ("input", frame, unit.graph, self.frames[frame][unit.graph]))

    def check_workers(self, frame: int) -> None:
        now = time.monotonic()
        for device in self.live:
            process = self.workers[device]
            if not process.is_alive():
                self.recover(device, f"died (exit code {process.exitcode})", frame)
            elif now - self.beats[self.index[device]] > self.detect_s:
                process.kill()
                self.recover(device, f"stopped answering for {self.detect_s:.1f} s", frame)

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
            for again in range(frame, self.sent):
                self.resent.add(again)  # its latency counts from the first arrival
                self.send_inputs(again)
        self.faults.append(f"device '{device}' {what} during frame {frame}; its {len(moved)} "
                           f"unit(s) moved to '{adopter}' and unfinished frames recomputed"
                           if moved else f"device '{device}' {what}; it held no units")


def _shift(event: Event, start: float) -> Event:
    return dataclasses.replace(event, start_s=event.start_s - start, end_s=event.end_s - start)
