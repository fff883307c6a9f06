"""The ray backend's ``messages`` mode: the local backend's message protocol (its
``runtime.coordinator`` and each device's ``local_worker.Loop``) carried by Ray actor calls.

The compiled and plain modes fix every call ahead of the run, which a schedule decided at
run time cannot be: who runs a stealable tile (``Plan.pool``, seed 003) is known only when
an idle device asks its home for one. In this mode each device's actor runs its ``Loop``
in one long call (``serve``); a message to a device is a call of its actor's ``deliver``,
which runs on a thread of its own (the ``mail`` concurrency group), so that a home hands
out a tile at once even while it computes; messages to the driver go through a Ray queue,
which the driver's ``Coordinator`` reads. Nobody polls: a device asks for work only when
it has nothing to run, as on the local backend.

Liveness: each actor puts a heartbeat in the queue every ``HEARTBEAT_S``. An actor whose
``serve`` call ended in a Ray actor error (it died) or whose heartbeat is older than
``detect_s`` (frozen: it is killed) is lost, and the coordinator re-plans its units onto
the survivors, which go on with what they hold; what a lost taker had stolen goes back to
its home's pool. Actors stamp with their wall clock; what they report is moved onto the
driver's clock (the offsets measured at the start) as the driver reads it.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch

from edgeweave.runtime.backend import Frames, RayOptions, Record, keep_freed_memory
from edgeweave.runtime.coordinator import Coordinator, patience_s
from edgeweave.runtime.emulation import Emulation
from edgeweave.runtime.local_worker import COORDINATOR, HEARTBEAT_S, Loop
from edgeweave.errors import WorkerError
from edgeweave.runtime.ray_cluster import first_line, offsets_of, on_driver_clock, resource
from edgeweave.runtime.worker import WARM_UP, Report
from edgeweave.units import Plan

MAIL = "mail"  # the concurrency group of ``deliver``: one thread, beside ``serve``'s


class LoopActor:
    """A device's ``Loop`` as a Ray actor (wrapped by ``ray.remote`` when used)."""

    def __init__(self, device: str, plan: Plan, mailbox, emulate_compute: bool) -> None:
        torch.set_num_threads(plan.cluster.device(device).threads or 1)
        keep_freed_memory()
        self.device, self.plan, self.mailbox = device, plan, mailbox
        self.emulation = Emulation(compute=emulate_compute)
        self.inbox: queue.Queue = queue.Queue()
        self.loop: Loop | None = None

    def clock(self) -> float:
        """This machine's wall clock."""
        return time.time()

    def connect(self, peers: dict[str, Any]) -> None:
        """Make the loop, with a poster for every peer's actor and for the driver."""
        outbound: dict[str, Any] = {device: _Call(actor, self.device)
                                    for device, actor in peers.items() if device != self.device}
        outbound[COORDINATOR] = _Mailbox(self.mailbox, self.device)
        self.loop = Loop(self.device, self.plan, outbound, self.inbox, self.emulation,
                         clock=time.time)

    def serve(self) -> None:
        """Run the loop until told to stop, beating meanwhile."""
        def beat() -> None:
            while True:
                self.mailbox.put((self.device, ("beat",)))
                time.sleep(HEARTBEAT_S)

        threading.Thread(target=beat, daemon=True).start()
        self.loop.serve_until_stopped()

    def deliver(self, sender: str, message: tuple) -> None:
        """A message from ``sender``: a request for work is answered here and now."""
        if not self.loop.answer(sender, message):
            self.inbox.put((sender, message))


@dataclasses.dataclass
class _Call:
    """Posts to a peer's actor; the call's result is never awaited."""

    actor: Any
    sender: str

    def post(self, message: tuple) -> None:
        self.actor.deliver.options(concurrency_group=MAIL).remote(self.sender, message)

    def flush(self) -> None:
        """Nothing to wait for: Ray carries the call."""


@dataclasses.dataclass
class _Mailbox:
    """Posts to the driver's queue."""

    mailbox: Any
    sender: str

    def post(self, message: tuple) -> None:
        self.mailbox.put((self.sender, message))

    def flush(self) -> None:
        """Nothing to wait for: ``post`` returns once the queue holds the message."""


class _Actors:
    """The actors as the coordinator sees them, and the inbox it reads: heartbeats are
    noted here, reports moved onto the driver's clock."""

    hint = ""

    def __init__(self, ray, actors: dict[str, Any], serving: dict[str, Any], mailbox,
                 offsets: dict[str, float], detect_s: float) -> None:
        self.ray, self.actors, self.serving, self.mailbox = ray, actors, serving, mailbox
        self.offsets, self.detect_s = offsets, detect_s
        self.beats = {device: time.time() for device in actors}

    def get(self, timeout: float) -> tuple[str, Any]:
        """The next message that is not a heartbeat (``queue.Empty`` after ``timeout``)."""
        deadline = time.time() + timeout
        while True:
            sender, message = self.mailbox.get(timeout=max(0.0, deadline - time.time()))
            if message[0] == "beat":
                self.beats[sender] = time.time()
                continue
            if message[0] == "report":
                message = ("report", self._on_driver_clock(message[1]))
            return sender, message

    def _on_driver_clock(self, report: Report) -> Report:
        offset = self.offsets[report.device]
        return dataclasses.replace(
            report, due_s=report.due_s - offset,
            arrived_s={model: at - offset for model, at in report.arrived_s.items()},
            events=tuple(on_driver_clock(e, self.offsets, 0.0) for e in report.events))

    def lost(self, devices, frozen: bool, busy_s=None) -> list[tuple[str, str]]:
        """Each of ``devices`` whose actor died or (``frozen``) stopped beating for
        ``detect_s``, or three times its longest compute (``busy_s``) if longer, and does
        not answer a ping within that time either (on a loaded machine the heartbeats can
        wait in the queue behind reports, or the queue's process behind others)."""
        found = []
        for device in devices:
            done, _ = self.ray.wait([self.serving[device]], timeout=0)
            window = patience_s(self.detect_s, (busy_s or {}).get(device, 0.0))
            if done and self._died(done[0]):
                found.append((device, "died"))
            elif frozen and time.time() - self.beats[device] > window:
                silence = self._silence(device, window)
                if silence is None:
                    self.beats[device] = time.time()
                    continue
                self.ray.kill(self.actors[device])
                found.append((device, silence))
        return found

    def _silence(self, device: str, window: float) -> str | None:
        """None when the actor answers a ping within ``window`` (on its mail thread, which
        answers while the loop computes), else what happened to it."""
        try:
            self.ray.get(self.actors[device].clock.options(concurrency_group=MAIL).remote(),
                         timeout=window)
            return None
        except self.ray.exceptions.RayActorError:
            return "died"
        except Exception:  # no answer: frozen
            return f"stopped answering for {window:.1f} s"

    def _died(self, serving) -> bool:
        """Whether a finished ``serve`` call ended with its actor's death (a loop that
        failed has put its error in the mailbox, which the coordinator reads)."""
        try:
            self.ray.get(serving, timeout=0)
        except self.ray.exceptions.RayActorError:
            return True
        except Exception:
            return False
        return False


def execute(ray, plan: Plan, frames: Frames, interval_s: float | None, timeout_s: float,
            options: RayOptions, record: Record, in_flight: int | None
            ) -> Iterator[dict[str, Any]]:
    """Run ``frames`` through ``plan`` with one ``LoopActor`` per device (Ray joined),
    yielding each frame's outputs by model in order."""
    from ray.util.queue import Queue

    mailbox = Queue(actor_options={"num_cpus": 0})
    remote = ray.remote(num_cpus=0, concurrency_groups={MAIL: 1})(LoopActor)
    actors = {device: remote.options(
        resources={resource(device): 0.001}, max_restarts=0,
        name=f"edgeweave-{device}-{os.getpid()}-{id(plan):x}").remote(
            device, plan.for_device(device), mailbox, options.emulate_compute)
        for device in plan.order}
    try:
        # the queue's process imports torch and edgeweave on the first report it holds
        # (over a second): it does so now, while the actors start
        mailbox.put(("", ("warm", Report("", WARM_UP, {}, (), False, 0.0))))
        mailbox.get(timeout=timeout_s)
        try:
            offsets = offsets_of(ray, actors, timeout_s)  # also waits until they are up
            ray.get([actor.connect.remote(actors) for actor in actors.values()],
                    timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise WorkerError(f"The actors did not start within {timeout_s:g} s (the run's "
                              "timeout_s).") from None
        except ray.exceptions.RayActorError as error:
            raise WorkerError(f"An actor died before the first frame, loading its plan: "
                              f"{first_line(error)}") from None
        serving = {device: actor.serve.remote() for device, actor in actors.items()}
        watch = _Actors(ray, actors, serving, mailbox, offsets, options.detect_s)

        def send(device: str, message: tuple) -> None:
            actors[device].deliver.options(concurrency_group=MAIL).remote(COORDINATOR, message)

        coordinator = Coordinator(plan, watch, send, watch, timeout_s, record, clock=time.time)
        coordinator.wait_ready()
        record.source = (f"measured: ray backend (messages), {len(actors)} actors"
                         f"{options_label(options)}")
        yield from coordinator.run(frames, interval_s, in_flight)
    finally:
        for actor in actors.values():
            ray.kill(actor)
        mailbox.shutdown(force=True)


def options_label(options: RayOptions) -> str:
    """How a timeline's source names what the run emulated."""
    return Emulation(compute=options.emulate_compute).label()
