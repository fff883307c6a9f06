"""The ray backend: one Ray actor per device, on the machine that is that device.

Each device's node offers a custom resource named after it (``resource(device)``; the
``edgeweave worker`` command starts a node with it), and the device's actor asks for a
sliver of it, so it can only be placed there. An actor wraps the device's
``DeviceWorker``, holding the plan as its device sees it (``Plan.for_device``: only its own
layers' weights), and runs one *call* per segment (``units.segments``).

A call returns one *parcel* per device that consumes its results and last the *report*
for the driver: the model outputs it computed and the events recorded. A consumer's call
takes the parcels addressed to its device (and the report of its device's previous call,
which keeps a device's calls in the plan's order), so tensors travel device to device
through Ray, never through the driver. Two modes execute the same calls:

- ``compiled`` (default): the plan is a static graph, compiled once with Ray Compiled
  Graphs; frames are executions of it, two in flight.
- ``plain``: ordinary actor calls, submitted frame by frame in a dependency order.

Actors stamp events with their wall clock; the driver measures each actor's offset (the
midpoint of its fastest of several round trips) and moves every event onto its own clock,
so workers on different machines share one timeline. A transfer event runs from the time
a parcel was sent to the start of the call that received it (an upper bound on the
transfer). A model's frame arrives at its time (its stream's, or ``interval_s`` apart: a
frame the driver holds back — at most ``in_flight`` being in the actors, and a round going
when its last model's inputs are due — waits as it would at its camera) and is done when
its last output is back at the model's source device, as in the simulator.

A dead actor is survived: actors hold what they computed for the frames the driver has not
collected, the survivors go on under the re-planned plan (``planners.recover.without``),
and the frames not collected are sent again — held units return their held results, only
the lost units are computed again. Other failures are named (the device and the frame);
every actor is killed and a Ray instance started for the run is shut down.

The calls of these two modes form a static graph: stealable units (``Plan.pool``) run at
their homes (the timeline's source says so). The third mode, ``messages``
(``runtime.ray_messages``, the default for a plan with stealable units), carries the local
backend's message protocol over actor calls instead, and steals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from edgeweave.errors import PlanError, WorkerError
from edgeweave.planners.recover import without
from edgeweave.runtime import ray_messages
from edgeweave.runtime.backend import (Frames, RayOptions, Record, collect_outputs,
                                       keep_freed_memory)
from edgeweave.runtime.ray_cluster import (connect, first_line, import_ray, offsets_of,
                                           on_driver_clock, remove_semaphores_left, resource,
                                           semaphores)
from edgeweave.runtime.emulation import Emulation
from edgeweave.runtime.worker import DeviceWorker, Parcel, Report, frame_outputs
from edgeweave.units import Event, Plan
from edgeweave.units.segments import Segment, receivers, segments
# Frames a compiled graph holds at once: each call's results wait in one-slot channels
# until read, so a device can run at most one frame ahead of the driver's reading anyway.
IN_FLIGHT = 2
DRIVER = "<driver>"
PING = "ping"  # the concurrency group in which an actor answers pings
TEARDOWN_S = 10.0  # how long a compiled graph may take to tear down after a loss


def targets(plan: Plan, segment: Segment) -> tuple[str, ...]:
    """Where a segment's call sends results, in the order of its returns: each device with
    a consumer of them, then the driver."""
    return (*receivers(plan, segment), DRIVER)


class DeviceActor:
    """A device's worker as a Ray actor (wrapped by ``ray.remote`` when used): one call
    runs one segment through the device's ``DeviceWorker`` and returns one parcel per
    device that consumes its results, then the report for the driver.

    The worker holds what it computed for every frame the driver has not collected (the
    *floor* that inputs carry and parcels pass on): after a re-plan, a call for a unit it
    holds returns the held results instead of computing them again."""

    def __init__(self, device: str, plan: Plan, emulate_compute: bool = False) -> None:
        torch.set_num_threads(plan.cluster.device(device).threads or 1)
        keep_freed_memory()
        self.core = DeviceWorker(device, plan, Emulation(compute=emulate_compute),
                                 clock=time.time)
        self.core.warm_up()
        self.floor = 0
        self.log: list[Event] = []  # every event of frames not yet collected

    def clock(self) -> float:
        """This machine's wall clock."""
        return time.time()

    def logged(self, first: int) -> list[Event]:
        """The events of frames ``first``.. (their returns may have been dropped)."""
        return [event for event in self.log if event.frame >= first]

    def adopt(self, units, order, graphs=None) -> None:
        """Go on with a re-planned plan; ``graphs`` hold the weights of the units moved
        here, when some are."""
        plan = self.core.plan
        self.core.adopt(dataclasses.replace(plan, units=units, order=order,
                                            graphs=graphs or plan.graphs))

    def run(self, segment: Segment, *arrived: Any) -> Any:
        """Run ``segment`` on what arrived: the frame's inputs ``(frame, floor, inputs)``
        when it starts with an input unit (or reads nothing, as a layer computing a
        constant such as ``arange``: then they only say which frame), and the parcels of
        its producers."""
        parcels = [a for a in arrived if isinstance(a, Parcel)]
        given = [a for a in arrived if isinstance(a, tuple)]
        reports = [a for a in arrived if isinstance(a, Report)]  # order on this device only
        if given:
            frame, floor = given[0][:2]
        else:
            frame, floor = (parcels[0].frame, parcels[0].floor) if parcels else (
                reports[0].frame, self.floor)
        self._forget(floor)
        for parcel in parcels:
            if parcel.sender != self.core.device:
                self.core.receive(parcel)
        if given and self.core.plan.is_input(segment.units[0]):
            unit = self.core.plan.unit(segment.units[0])
            self.core.receive_inputs(frame, unit.graph, given[0][2][unit.graph])
        sent, report = self.core.run(frame, segment)
        self.log.extend(report.events)
        by_device = {device: dataclasses.replace(parcel, floor=self.floor)
                     for device, parcel in sent}
        returns = [by_device[d] for d in targets(self.core.plan, segment)[:-1]] + [report]
        return tuple(returns) if len(returns) > 1 else returns[0]

    def _forget(self, floor: int) -> None:
        if floor > self.floor:
            for frame in range(self.floor, floor):
                self.core.finish(frame)
            self.floor = floor
            self.log = [event for event in self.log if event.frame >= floor]


def execute(plan: Plan, frames: Frames, interval_s: float | None = None,
            timeout_s: float = 60.0, options: RayOptions = RayOptions(),
            record: Record | None = None, in_flight: int | None = None
            ) -> Iterator[dict[str, Any]]:
    """Run ``frames`` through ``plan`` with one Ray actor per device, one call per segment,
    yielding each frame's outputs by model in order; what was measured goes to ``record``.

    With no ``address`` and no Ray already running here, a local Ray instance offering
    every device's resource is started for the run and stopped after it. An actor that
    dies is lost (when Ray does not name it, it is the one that does not answer a ping
    within ``detect_s``): its units are re-planned onto the survivors, whose actors go on
    with what they hold, and the frames not yet collected are sent again.
    """
    record = record if record is not None else Record()
    mode, detect_s = options.mode, options.detect_s
    if mode == "auto":
        mode = "messages" if plan.pool else "compiled"
    ray = import_ray()
    left = semaphores()
    started = connect(ray, list(plan.order), options.address)
    if mode == "messages":
        try:
            yield from ray_messages.execute(ray, plan, frames, interval_s, timeout_s, options,
                                            record, in_flight)
        finally:
            if started:
                ray.shutdown()
                remove_semaphores_left(left)
        return
    session = _Session(ray, plan, mode, timeout_s, options.emulate_compute, interval_s,
                       detect_s)
    collected = 0
    try:
        session.start()
        record.source = (f"measured: ray backend ({mode}), "
                         f"{sum(1 for ids in plan.order.values() if ids)} actors"
                         + (", stealable units run at their homes" if plan.pool else "")
                         + ray_messages.options_label(options))
        while True:
            try:
                for reports in session.feed(frames, collected):
                    session.measure(reports, record)
                    collected += 1
                    frames.release(collected)
                    yield collect_outputs(plan, frame_outputs(plan, reports))
                break
            except (ray.exceptions.RayActorError, ray.exceptions.RayChannelError) as error:
                # a compiled graph sees a dead actor as a closed channel
                record.faults.append(session.recover(error, collected, record))
            except ray.exceptions.GetTimeoutError:
                raise WorkerError(f"No answer for {timeout_s:.0f} s on frame {collected}: an "
                                  "actor stopped answering.") from None
    except ray.exceptions.RayTaskError as error:
        cause = error.cause if isinstance(error.cause, WorkerError) else error
        raise WorkerError(first_line(cause)) from None
    finally:
        session.close()
        if started:
            ray.shutdown()
            remove_semaphores_left(left)


class _Session:
    """The actors of a run and the runner that feeds them frames; after a device is lost,
    the survivors' actors go on — with what they hold — under the re-planned plan."""

    def __init__(self, ray, plan: Plan, mode: str, timeout_s: float, emulate_compute: bool,
                 interval_s: float | None, detect_s: float) -> None:
        self.ray, self.plan, self.mode, self.emulate = ray, plan, mode, emulate_compute
        self.timeout_s, self.interval_s, self.detect_s = timeout_s, interval_s, detect_s
        self.actors: dict[str, Any] = {}
        self.runner: _Plain | None = None
        self.offsets: dict[str, float] = {}
        # per frame not yet measured, when each model's inputs arrived (kept when re-sent)
        self.arrival: dict[int, dict[str, float]] = {}
        self.origin: float | None = None
        self.lost: set[str] = set()
        self.spawned = 0  # generations of actors started (a name is never reused)
        self.start_s = time.time()

    def start(self) -> None:
        """Start an actor on each device with units, pinned by its resource."""
        self._spawn([device for device, ids in self.plan.order.items() if ids])
        self.runner = self._runner()
        self.start_s = time.time()

    def _spawn(self, devices: Sequence[str]) -> None:
        """Fresh actors for ``devices`` on the current plan, each answering pings on a
        thread of its own (``PING``), while it computes too; their clocks' offsets."""
        remote = self.ray.remote(num_cpus=0, concurrency_groups={PING: 1})(DeviceActor)
        self.spawned += 1
        fresh = {device: remote.options(
            resources={resource(device): 0.001}, max_restarts=0,
            name=f"edgeweave-{device}-{os.getpid()}-{id(self):x}-{self.spawned}").remote(
                device, self.plan.for_device(device), self.emulate) for device in devices}
        self.actors.update(fresh)
        self.offsets.update(offsets_of(self.ray, fresh, self.timeout_s))

    def _runner(self) -> _Plain:
        kind = _Compiled if self.mode == "compiled" else _Plain
        return kind(self.ray, self.plan, self.actors, self.arrival)

    def _watch(self, stop: threading.Event) -> None:
        """Until ``stop``, every ``detect_s``: kill each actor that does not answer a ping
        within ``detect_s`` — frozen, since a busy one answers on its ping thread; the
        call the driver waits on then fails, and the run recovers as from a death."""
        while not stop.wait(self.detect_s):
            for device in self._silent(self.actors):
                self.ray.kill(self.actors[device])

    def _silent(self, actors: Mapping[str, Any]) -> list[str]:
        """The devices among ``actors`` that do not answer a ping within ``detect_s``."""
        pings = {device: actor.clock.options(concurrency_group=PING).remote()
                 for device, actor in actors.items()}
        silent = []
        for device, ping in pings.items():
            try:
                self.ray.get(ping, timeout=self.detect_s)
            except Exception:  # died, or stopped answering: lost either way
                silent.append(device)
        return silent

    def feed(self, frames: Frames, first: int) -> Iterator[list[Report]]:
        """Send frames ``first``.. and yield each one's reports, in order."""
        if self.origin is None:  # frames sent again after a loss keep their times
            self.origin = time.time()
        origin, streams = self.origin, self.plan.streams

        def due(frame: int) -> dict[str, float]:
            return {m: origin + stream.arrival_s(frame, self.interval_s)
                    for m, stream in streams.items()}

        stop = threading.Event()  # the watcher pings while the driver waits on results
        watcher = threading.Thread(target=self._watch, args=(stop,), daemon=True)
        watcher.start()
        try:
            yield from self.runner.feed(frames, first, due, self.timeout_s)
        finally:
            stop.set()
            watcher.join()

    def measure(self, reports: list[Report], record: Record) -> None:
        """Record a collected frame: its events, and per model its arrival and when its
        last output was back at its source (the driver stands for it), on the driver's
        clock from the start."""
        start, offsets, frame = self.start_s, self.offsets, reports[0].frame
        record.add_events(on_driver_clock(e, offsets, start)
                          for report in reports for e in report.events)
        record.complete({m: at - start for m, at in self.arrival.pop(frame).items()},
                        {m: max(r.due_s - offsets[r.device] - start for r in reports
                                if any(self.plan.unit(u).graph == m for u, _ in r.outputs))
                         for m in self.plan.graphs})

    def recover(self, error, frame: int, record: Record) -> str:
        """Re-plan around the dead actor(s); returns the line that reports it."""
        dead = self._dead(error)
        for device in dead:  # first: a compiled graph's teardown waits on a frozen actor
            self.ray.kill(self.actors[device])
        # a survivor's compiled loop may not stop (seen spinning on a channel to the dead
        # actor, with multi-MB tensors): then the survivors are replaced, holding nothing
        stuck = not self.runner.close(TEARDOWN_S)
        if stuck:
            for device in set(self.actors) - set(dead):
                self.ray.kill(self.actors[device])
        for device, actor in self.actors.items():  # events whose returns were dropped
            if device not in dead and not stuck:
                try:
                    record.add_events(on_driver_clock(e, self.offsets, self.start_s)
                                      for e in self.ray.get(actor.logged.remote(frame),
                                                            timeout=self.timeout_s))
                except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
                    dead.append(device)  # lost since it answered its ping
                    self.ray.kill(actor)
        if not dead:
            raise WorkerError(f"An actor failed on frame {frame}: {first_line(error)}")
        self.lost |= set(dead)
        moved = [uid for device in dead for uid in self.plan.order.get(device, ())]
        try:
            self.plan = without(self.plan, self.lost)
        except PlanError as cannot:
            raise WorkerError(f"The actor of device '{dead[0]}' died while computing frame "
                              f"{frame}, and the run cannot go on: {cannot}") from None
        for device in dead:
            del self.actors[device]
        adopter = self.plan.unit(moved[0]).device if moved else None
        if stuck:
            self._spawn([device for device, ids in self.plan.order.items() if ids])
        else:
            self.ray.get([actor.adopt.remote(self.plan.units, self.plan.order,
                                             self.plan.for_device(device).graphs
                                             if device == adopter else None)
                          for device, actor in self.actors.items()], timeout=self.timeout_s)
        self.runner = self._runner()
        who = " and ".join(f"'{device}'" for device in dead)
        return (f"device {who} died during frame {frame}; {len(moved)} unit(s) moved to "
                f"'{adopter}' and recomputed from what the survivors held")

    def _dead(self, error) -> list[str]:
        """The devices whose actor died: the one ``error`` names, and every other that does
        not answer a ping within ``detect_s`` (several may die at once)."""
        named = [d for d, a in self.actors.items()  # handles show their id only privately
                 if a._actor_id.hex() == getattr(error, "actor_id", None)]
        return named + self._silent({d: a for d, a in self.actors.items() if d not in named})

    def close(self) -> None:
        """Kill the actors (first: a compiled graph then tears down at once)."""
        for actor in self.actors.values():
            self.ray.kill(actor)
        if self.runner is not None:
            self.runner.close(TEARDOWN_S)


class _Plain:
    """Ordinary actor calls, frame by frame, in a dependency order."""

    def __init__(self, ray, plan: Plan, actors, arrival: dict[int, dict[str, float]]) -> None:
        self.ray, self.plan, self.actors = ray, plan, actors
        self.arrival = arrival  # per frame, when each model's arrived, kept across re-plans
        self.calls = segments(plan)
        call_of = {unit_id: call for call in self.calls for unit_id in call.units}
        # per call: the (producer call, index of its return for this device) it reads, and
        # the report of the device's previous call, which keeps a device's calls in order
        self.reads: dict[Segment, list[tuple[Segment, int]]] = {}
        previous: dict[str, Segment] = {}
        for call in self.calls:
            self.reads[call] = [(producer, targets(plan, producer).index(call.device))
                                for producer in dict.fromkeys(
                                    call_of[n.unit] for u in call.units
                                    for n in plan.unit(u).needs)
                                if producer.device != call.device]
            if call.device in previous:
                before = previous[call.device]
                self.reads[call].append((before, len(targets(plan, before)) - 1))
            previous[call.device] = call

    in_flight = 4  # frames submitted before the oldest is collected (bounds what is held)

    def _given(self, call: Segment) -> bool:
        """Whether the call takes the frame's inputs: it starts with a model input, or
        reads nothing else (its frame comes with them)."""
        return self.plan.is_input(call.units[0]) or not self.reads[call]

    def call(self, call: Segment, *args) -> list:
        """Submit (or, compiled, bind) a call: one reference per target."""
        count = len(targets(self.plan, call))
        method = self.actors[call.device].run
        if count == 1:
            return [self.launch(method, call, *args)]
        return list(self.launch(method.options(num_returns=count), call, *args))

    @staticmethod
    def launch(method, *args):
        return method.remote(*args)

    def submit(self, frame: int, floor: int, inputs: dict) -> list:
        """Submit one frame's calls; the driver's returns."""
        returned: dict[Segment, list] = {}
        for call in self.calls:
            args = ([(frame, floor, inputs)] if self._given(call) else []) + [
                returned[producer][index] for producer, index in self.reads[call]]
            returned[call] = self.call(call, *args)
        return [refs[-1] for refs in returned.values()]

    def collect(self, submitted, timeout_s: float) -> list[Report]:
        """A submitted frame's returns to the driver."""
        return self.ray.get(submitted, timeout=timeout_s)

    def feed(self, frames: Frames, first: int, due: Callable[[int], dict[str, float]],
             timeout_s: float) -> Iterator[list[Report]]:
        """Send frames ``first``.. at their times (``due``, per model; a frame goes when its
        last model's inputs are due, the others waiting as at their cameras),
        ``in_flight`` at most, and yield each one's reports, in order; every frame tells
        the actors which frames are collected (the floor)."""
        pending: list = []
        frame = floor = first
        try:
            while pending or frames.has(frame):
                if pending and (len(pending) == self.in_flight or not frames.has(frame)):
                    floor += 1
                    yield self.collect(pending.pop(0), timeout_s)
                    continue
                times = self.arrival.setdefault(frame, due(frame))
                time.sleep(max(0.0, max(times.values()) - time.time()))
                pending.append(self.submit(frame, floor, frames[frame]))
                frame += 1
        except BaseException:
            # results never read can only be dropped, and only while a graph is up
            for submitted in pending:
                with contextlib.suppress(Exception):
                    self.collect(submitted, 0)
            raise

    def close(self, wait_s: float | None = None) -> bool:
        """Release what the mode holds (nothing for plain calls); whether that finished
        within ``wait_s``."""
        return True


class _Compiled(_Plain):
    """The plan compiled once as a Ray Compiled Graph; each frame one execution."""

    in_flight = IN_FLIGHT

    def __init__(self, ray, plan: Plan, actors, arrival: dict[int, dict[str, float]]) -> None:
        super().__init__(ray, plan, actors, arrival)
        from ray.dag import InputNode, MultiOutputNode

        nodes: dict[Segment, list] = {}
        with InputNode() as source:
            for call in self.calls:
                args = ([source] if self._given(call) else []) + [
                    nodes[producer][index] for producer, index in self.reads[call]]
                nodes[call] = self.call(call, *args)
            graph = MultiOutputNode([returned[-1] for returned in nodes.values()])
        # Ray logs each actor loop it cannot cancel when it tears the graph down after a
        # death or our kill; both are expected here, and reported our way
        self.quiet = logging.getLogger("ray.dag.compiled_dag_node")
        self.level = self.quiet.level
        self.quiet.setLevel(logging.CRITICAL)
        self.compiled = graph.experimental_compile(_max_inflight_executions=IN_FLIGHT)

    @staticmethod
    def launch(method, *args):
        return method.bind(*args)

    def submit(self, frame: int, floor: int, inputs: dict):
        return self.compiled.execute((frame, floor, inputs))

    def close(self, wait_s: float | None = None) -> bool:
        """Tear the graph down: whether that finished within ``wait_s`` (it waits on every
        actor's loop; killing the actors ends it)."""
        teardown = threading.Thread(target=self.compiled.teardown, daemon=True)
        teardown.start()
        teardown.join(wait_s)
        self.quiet.setLevel(self.level)
        return not teardown.is_alive()
