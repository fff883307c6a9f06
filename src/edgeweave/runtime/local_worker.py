"""A worker's loop around its device's ``DeviceWorker`` (``Loop``), and the local worker
process that runs one over its pipes (``serve``); the ray backend's ``messages`` mode runs
the same loop in an actor, over actor calls (``runtime.ray_messages``).

The loop runs the device's segments in the plan's order, frame after frame; what arrives
goes into the worker, what a segment produces goes out to its receiver. It steals as
``units.stealing`` says: a home answers requests as they arrive (on the reader thread of
the asker's pipe, or the actor's mail thread) — at once, even while it computes — and
offers work to the takers of its stealable units when more of them open; a device asks
only while it waits with nothing to run, and runs what it is handed before waiting again.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import torch

from edgeweave.errors import WorkerError
from edgeweave.runtime.backend import keep_freed_memory
from edgeweave.runtime.pipes import Sender, read_into
from edgeweave.runtime.emulation import Emulation
from edgeweave.runtime.worker import WARM_UP, DeviceWorker, Report
from edgeweave.units import Plan, Unit
from edgeweave.units.segments import Segment
from edgeweave.units.stealing import Pool, Thief, tasks, unshrunk

HEARTBEAT_S = 0.25
COORDINATOR = "<coordinator>"


class _Stop(Exception):
    pass


class _Restart(Exception):
    pass


def serve(device: str, pickled_plan: bytes, inbound, outbound, emulation: Emulation, beats,
          index: int) -> None:
    """A worker process: its device's segments of the plan (as device's ``Plan.for_device``,
    pickled), frame after frame, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's to handle
    plan: Plan = pickle.loads(pickled_plan)
    torch.set_num_threads(plan.cluster.device(device).threads or 1)
    keep_freed_memory()

    parent = os.getppid()

    def beat() -> None:
        while True:
            beats[index] = time.monotonic()
            time.sleep(HEARTBEAT_S)
            # the fork server that forked this worker leaves with the driver: a driver
            # that was killed cannot stop its workers, so they leave once orphaned
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=beat, daemon=True).start()
    inbox: queue.Queue = queue.Queue()
    loop = Loop(device, plan, {target: Sender(connection)
                               for target, connection in outbound.items()}, inbox, emulation)
    for sender, connection in inbound.items():
        read_into(connection, sender, inbox, loop.answer)
    loop.serve_until_stopped()
    # Leave without the interpreter's shutdown: it ends a daemon thread that is inside
    # torch (a reader copying a tensor out of an arena) with pthread_exit, which C++ turns
    # into "terminate called without an active exception" and an abort.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class Poster(Protocol):
    """One peer's end of a transport: ``post`` never waits on the peer."""

    def post(self, message: tuple) -> None: ...

    def flush(self) -> None:
        """Wait until what was posted has left."""
        ...


class Loop:
    """A worker's loop around its ``DeviceWorker``: what arrives in ``inbox`` (as
    ``(sender, message)``, messages of type ``steal`` answered at once by ``answer``, which
    the transport calls as a message arrives) goes in, what a segment produces goes out to
    its receiver's ``outbound`` poster."""

    def __init__(self, device: str, plan: Plan, outbound: Mapping[str, Poster],
                 inbox: queue.Queue, emulation: Emulation,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.device, self.outbound, self.inbox, self.clock = device, outbound, inbox, clock
        self.core = DeviceWorker(device, plan, emulation, clock)
        self.tasks = tasks(plan)  # every stealable task, by its first unit
        self.stacks = {first: unshrunk(plan, self.tasks[first]) for first in plan.fallback}
        self.pool, self.thief = Pool(plan, device, self.tasks), Thief(device)
        # stolen tasks handed to this device, with their unshrunk stack when so handed
        self.taken: list[tuple[int, Segment, Unit | None]] = []
        self.finished: set[int] = {WARM_UP}  # what arrives of the rehearsal is dropped
        self.seen: set[int] = set()  # unfinished frames this device has received data of
        self.dead: set[str] = set()
        self.unreported: dict[int, tuple] = {}  # frame -> events not yet reported
        # (frame, model) -> when the model's inputs of the frame got here, unreported
        self.arrived: dict[tuple[int, str], float] = {}
        self.frame = 0

    def serve_until_stopped(self) -> None:
        """Serve until told to stop; an error is reported to the coordinator, which
        names the device."""
        try:
            self.serve()
        except _Stop:
            return
        except Exception as error:
            text = str(error) if isinstance(error, WorkerError) else (
                f"Device '{self.device}' failed on frame {self.frame}: "
                f"{type(error).__name__}: {error}")
            self.post(COORDINATOR, ("error", text))
            self.outbound[COORDINATOR].flush()

    def serve(self) -> None:
        for target, parcel in self.core.warm_up():  # warms the pipes and their arenas too
            self.post(target, ("parcel", parcel))
        self.post(COORDINATOR, ("ready", self.device))
        while True:
            try:
                if not self.core.segments:  # nothing to do unless a re-plan brings units
                    self.wait(lambda: False)
                if self.frame not in self.finished:
                    self.run_frame()
                self.frame += 1
            except _Restart:
                pass

    def run_frame(self) -> None:
        frame, last = self.frame, self.core.segments[-1]
        for segment in self.core.segments:
            if self.core.computed(frame, segment):
                continue
            unit_id = segment.units[0]
            if unit_id not in self.core.plan.pool:
                self.wait(lambda s=segment: not self.core.missing(frame, s))
            else:  # stealable: run it unless another device took it first
                stack = self.stacks.get(unit_id)
                self.wait(lambda u=unit_id, s=segment, k=stack: self.pool.skips(frame, u)
                          or self.core.has_needs(frame, s)
                          or (k is not None and self.core.has_stack_needs(frame, k)))
                whole = None
                if self.pool.skips(frame, unit_id):
                    mine = False
                elif self.core.has_needs(frame, segment):
                    mine = self.pool.claim(frame, unit_id)
                else:  # what it reads of other tasks is late: unshrunk, if nobody took it
                    mine, whole = self.pool.claim_unshrunk(frame, unit_id), stack
                if not mine:
                    if segment == last:  # the coordinator waits for a last report
                        self.post(COORDINATOR, ("report", Report(
                            self.device, frame, {}, self.unreported.pop(frame, ()), True,
                            self.clock(), self.take_arrived(frame))))
                    continue
                self.run(segment, frame, whole=whole)
                continue
            self.run(segment, frame)

    def run(self, segment, frame: int, stolen: bool = False, whole: Unit | None = None
            ) -> None:
        parcels, report = (self.core.run(frame, segment) if whole is None
                           else self.core.run_unshrunk(frame, whole, segment))
        # the coordinator only needs outputs and the last report: a report per segment
        # woke it at every hop, on the cores the workers compute on; events wait here.
        # A stolen task's events may be of a frame this device has reported: they travel
        # with its results, and their consumer reports them
        events = self.unreported.pop(report.frame, ()) + report.events
        if stolen and parcels and not report.outputs:
            target, parcel = parcels[0]
            parcels[0] = (target, dataclasses.replace(parcel, events=events))
            events, stolen = (), False
        for target, parcel in parcels:
            self.post(target, ("parcel", parcel))
        self.open_pool()
        if not (report.outputs or report.last or stolen):
            if events:
                self.unreported[report.frame] = events
            return
        self.post(COORDINATOR, ("report", dataclasses.replace(
            report, events=events, arrived_s=self.take_arrived(report.frame))))

    def take_arrived(self, frame: int) -> dict[str, float]:
        """Per model, when its inputs of ``frame`` got here, forgotten once taken."""
        return {model: self.arrived.pop((f, model)) for f, model in list(self.arrived)
                if f == frame}

    def post(self, target: str, message: tuple) -> None:
        if target not in self.dead:  # a dead device's units are re-planned elsewhere
            self.outbound[target].post(message)

    def wait(self, ready: Callable[[], bool]) -> None:
        """Take messages until ``ready()``, running units handed over meanwhile and asking
        for more when idle; a re-plan or a frame done elsewhere restarts the loop, a stop
        ends it."""
        while not ready():
            if self.taken:
                frame, segment, whole = self.taken.pop(0)
                if frame not in self.finished:
                    self.run(segment, frame, stolen=True, whole=whole)
                continue
            home = self.thief.ask()
            if home is not None:
                self.post(home, ("steal", self.device))
            sender, message = self.inbox.get()
            if message is None:  # a pipe closed: its writer is gone
                if sender == COORDINATOR:
                    raise _Stop
                self.dead.add(sender)
                self.thief.lost(sender)
                continue
            kind = message[0]
            if kind == "offer":
                self.thief.offered(sender)
                continue
            if kind == "empty":
                self.thief.answered(sender, empty=True)
                continue
            if kind == "handed":
                self.thief.answered(sender, empty=False)
                parcel = message[2]
                if parcel.frame not in self.finished:
                    self.core.receive(parcel)
                    self.taken.append((parcel.frame, self.tasks[message[1]],
                                       self.stacks[message[1]] if message[3] else None))
                continue
            if kind == "stop":
                raise _Stop
            if kind == "replan":
                self.adopt(*message[1:])
                raise _Restart
            if kind == "done":
                self.finished.add(message[1])
                self.seen.discard(message[1])
                self.core.finish(message[1])
                self.pool.forget(message[1])
                self.unreported.pop(message[1], None)
                self.take_arrived(message[1])
                if message[1] == self.frame:
                    # complete elsewhere while this device waited on it: after a re-plan
                    # rewound it, it may wait on data that was dropped with the frame
                    raise _Restart
                continue
            if kind == "open":  # fed: a segment that reads nothing may run it
                if message[1] not in self.finished:
                    self.core.open(message[1], message[2])
                continue
            frame = message[1] if kind == "input" else message[1].frame
            if frame in self.finished:
                continue  # a late copy for a frame already complete
            self.seen.add(frame)
            if kind == "input":
                _, frame, graph, tensors = message
                self.core.receive_inputs(frame, graph, tensors)
            else:
                self.core.receive(message[1])
                if message[1].events:  # a stolen task's, reported from here
                    self.unreported[frame] = self.unreported.get(frame, ()) + message[1].events
            self.open_pool()

    def answer(self, taker: str, message) -> bool:
        """On a reader thread, at once even while computing: note when a frame's inputs
        arrive (its arrival at its source device), and hand a device that asks the next
        stealable task it may take, with what it reads, or say there is none."""
        if message is not None and message[0] == "input" and message[1] not in self.finished:
            self.arrived.setdefault((message[1], message[2]), self.clock())
        if message is None or message[0] != "steal":
            return False
        given = self.pool.take(taker)
        if given is None:
            self.post(taker, ("empty",))
        else:
            (frame, first), whole = given
            parcel = self.core.handover(frame, self.pool.tasks[first], taker,
                                        self.stacks[first] if whole else None)
            self.post(taker, ("handed", first, parcel, whole))
        return True

    def open_pool(self) -> None:
        """Open the stealable tasks homed here whose inputs are all in, and offer work to
        their takers when any is new."""
        if not self.pool.units:
            return
        new = False
        for frame in sorted(self.seen):
            new |= self.pool.opened(frame, [u for u, task in self.pool.tasks.items()
                                            if self.core.has_needs(frame, task)])
            new |= self.pool.arrived(frame, [u for u, stack in self.stacks.items()
                                             if u in self.pool.tasks
                                             and self.core.has_stack_needs(frame, stack)])
        if new:
            takers = {t for u in self.pool.units for t in self.core.plan.pool[u]}
            for taker in sorted(takers - {self.device}):
                self.post(taker, ("offer",))

    def adopt(self, units, order, graphs, restart: int, lost: str) -> None:
        """Switch to a re-planned plan: re-send held results to units that moved."""
        plan = self.core.plan
        before = {unit.id: unit.device for unit in plan.units}
        self.dead.add(lost)
        self.core.adopt(dataclasses.replace(plan, units=units, order=order,
                                            graphs=graphs or plan.graphs))
        moved = {unit.id for unit in units if unit.device != before[unit.id]}
        for target, parcel in self.core.resend(moved):
            self.post(target, ("parcel", parcel))
        self.tasks = tasks(self.core.plan)
        self.stacks = {first: unshrunk(self.core.plan, self.tasks[first])
                       for first in self.core.plan.fallback}
        self.pool.adopt(self.core.plan, self.tasks)
        self.pool.release(lost)  # what the lost device took goes back to the pool
        self.thief.lost(lost)
        self.frame = min(self.frame, restart)
        self.open_pool()
