"""The ray backend: one Ray actor per device, on the machine that is that device.

Each device's node offers a custom resource named after it (``resource(device)``; the
``edgeweave worker`` command starts a node with it), and the device's actor asks for a
sliver of it, so it can only be placed there. An actor holds the plan as its device sees
it (``Plan.for_device``: only its own layers' weights) and runs one unit per call.

A unit's call returns one *parcel* per device that consumes its results — the crops its
consumers there need, with the producer, the frame and the time sent — and last what it
computed of the model's outputs, for the driver. A consumer's call takes the parcels
addressed to its device, so tensors travel device to device through Ray, never through
the driver. Two modes execute the same calls:

- ``compiled`` (default): the plan is a static graph, compiled once with Ray Compiled
  Graphs; frames are executions of it, several in flight. A hop costs tens of µs.
- ``plain``: ordinary actor calls, submitted frame by frame in a dependency order
  (actors run calls in submission order, which is the plan's order); ~1 ms per hop.

Actors stamp events with their wall clock; the driver measures each actor's offset (the
midpoint of its fastest of several round trips) and moves every event onto its own clock,
so workers on different machines share one timeline. A transfer event runs from the time
a parcel was sent to the start of the call that received it (an upper bound on the
transfer). A frame is done when the last of its output units has finished.

Failures are named (the device and the frame), every actor is killed, and a Ray instance
started for the run is shut down; re-planning around a dead worker is the local backend's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from edgeweave.errors import ClusterConfigError, EdgeweaveError
from edgeweave.runtime.inline import collect_outputs
from edgeweave.runtime.local import LocalRun, WorkerError
from edgeweave.simulation import Event, Timeline
from edgeweave.units import Plan, execution_order
from edgeweave.units.compute import Piece, compute_unit, crop

MODES = ("compiled", "plain")
DRIVER = "<driver>"


def resource(device: str) -> str:
    """The Ray custom resource that marks the node where ``device`` runs."""
    return f"edgeweave-device-{device}"


def targets(plan: Plan, unit_id: str) -> tuple[str, ...]:
    """Where a unit's call sends its results, in the order of its returns: each device
    with a consumer of them, then the driver."""
    devices = {plan.unit(consumer).device for consumer, _ in plan.forwarding[unit_id]}
    return (*sorted(devices), DRIVER)


class DeviceActor:
    """A device's worker: runs one unit per call (wrapped by ``ray.remote`` when used)."""

    def __init__(self, device: str, plan: Plan) -> None:
        self.device, self.plan = device, plan
        self.events: list[Event] = []
        self.received: set[tuple[int, str]] = set()
        torch.set_num_threads(plan.cluster.device(device).threads or 1)

    def clock(self) -> float:
        """This machine's wall clock."""
        return time.time()

    def recorded(self) -> list[Event]:
        """The events recorded so far."""
        return self.events

    def run(self, unit_id: str, *arrived: Any) -> Any:
        """Run unit ``unit_id`` on the frame's inputs (an input unit) or on the parcels
        addressed to this device; returns one parcel per target."""
        start = time.time()
        unit = self.plan.unit(unit_id)
        graph = self.plan.graphs[unit.graph]
        frame = arrived[0][0]  # inputs and parcels alike start with the frame
        try:
            if graph[unit.last].kind == "input":
                tensor = arrived[0][1][unit.graph][graph.inputs.index(unit.last)]
                outputs = {unit.last: (unit.region, tensor[unit.region.slices()])}
            else:
                crops = self._unpack(arrived, start)
                outputs = compute_unit(graph, unit, [
                    (need, crops[need.unit, need.layer, need.region]) for need in unit.needs])
        except Exception as error:  # named for the driver: device, frame and cause
            raise WorkerError(f"Device '{self.device}' failed on frame {frame} (unit {unit_id}): "
                              f"{type(error).__name__}: {error}") from None
        end = time.time()
        self.events.append(Event("compute", frame, unit_id, self.device, start, end))
        parcels = [self._parcel(frame, unit_id, outputs, device, end)
                   for device in targets(self.plan, unit_id)]
        return tuple(parcels) if len(parcels) > 1 else parcels[0]

    def _unpack(self, arrived, start: float) -> dict[tuple, torch.Tensor]:
        crops: dict[tuple, torch.Tensor] = {}
        for frame, producer, source, sent, tensors in arrived:
            crops.update(tensors)
            if source != self.device and (frame, producer) not in self.received:
                self.received.add((frame, producer))
                size = sum(t.numel() * t.element_size() for t in tensors.values())
                self.events.append(Event("transfer", frame, producer,
                                         f"{source}->{self.device}", sent, start, size))
        return crops

    def _parcel(self, frame: int, unit_id: str, outputs: dict[str, Piece], device: str,
                now: float) -> tuple:
        if device == DRIVER:
            graph = self.plan.graphs[self.plan.unit(unit_id).graph]
            return frame, {layer: piece for layer, piece in outputs.items()
                           if layer in graph.outputs}
        tensors = {(unit_id, need.layer, need.region): crop(outputs[need.layer], need.region)
                   for consumer, need in self.plan.forwarding[unit_id]
                   if self.plan.unit(consumer).device == device}
        return frame, unit_id, self.device, now, tensors


def run_ray(plan: Plan, frames: Sequence[dict[str, tuple[torch.Tensor, ...]]],
            interval_s: float = 0.0, timeout_s: float = 60.0, address: str | None = None,
            mode: str = "compiled", on_frame: Callable[[int], None] | None = None) -> LocalRun:
    """Run ``frames`` through ``plan`` with one Ray actor per device.

    With no ``address`` and no Ray already running here, a local Ray instance offering
    every device's resource is started for the run and stopped after it.
    """
    if mode not in MODES:
        raise EdgeweaveError(f"Unknown Ray mode '{mode}'; modes: {', '.join(MODES)}.")
    import ray

    started = connect(ray, list(plan.order), address)
    actors: dict[str, Any] = {}
    try:
        remote = ray.remote(num_cpus=0, max_concurrency=1)(DeviceActor)
        for device in plan.order:
            actors[device] = remote.options(
                resources={resource(device): 0.001}, max_restarts=0).remote(device, plan.for_device(device))
        offsets = _offsets(ray, actors, timeout_s)
        runner = (_Compiled if mode == "compiled" else _Plain)(ray, plan, actors, on_frame)
        try:
            start = time.time()
            arrival = runner.feed(frames, interval_s, timeout_s)
            results = runner.results
        finally:
            runner.close()
        events = [e for device, actor in actors.items()
                  for e in _moved(ray.get(actor.recorded.remote(), timeout=timeout_s),
                                  offsets[device] + start)]
    except ray.exceptions.RayTaskError as error:
        cause = error.cause if isinstance(error.cause, WorkerError) else error
        raise WorkerError(_first_line(cause)) from None
    except ray.exceptions.RayActorError as error:
        dead = [d for d, a in actors.items() if a._actor_id.hex() == error.actor_id] or ["?"]
        raise WorkerError(f"The actor of device '{dead[0]}' died.") from None
    except ray.exceptions.GetTimeoutError:
        raise WorkerError(f"No answer for {timeout_s:.0f} s: an actor stopped answering.") \
            from None
    finally:
        for actor in actors.values():
            ray.kill(actor)
        if started:
            ray.shutdown()
    outputs = []
    for frame_results in results:
        pieces: dict[tuple[str, str], list[Piece]] = {}
        for unit_id, (_, computed) in frame_results.items():
            for layer, piece in computed.items():
                pieces.setdefault((plan.unit(unit_id).graph, layer), []).append(piece)
        outputs.append(collect_outputs(plan, pieces))
    output_units = {uid for uid, returned in results[0].items() if returned[1]}
    done = [max(e.end_s for e in events if e.kind == "compute" and e.frame == f
                and e.unit in output_units) for f in range(len(frames))]
    timeline = Timeline(tuple(sorted(events, key=lambda e: (e.start_s, e.kind, e.frame, e.unit))),
                        tuple(a - start for a in arrival), tuple(done),
                        f"measured: ray backend ({mode}), {len(actors)} actors")
    return LocalRun(outputs, timeline, ())


def worker_command(device: str, address: str, token_file: str | None = None,
                   cpus: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``ray start`` command line (and environment) that joins this machine to the Ray
    cluster at ``address`` as ``device``, with token authentication on; the token comes
    from ``token_file``, else from ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``."""
    _check_reachable(address)
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", f"--address={address}",
               f"--resources={json.dumps({resource(device): 1})}", "--block"]
    if cpus is not None:
        command.append(f"--num-cpus={cpus}")
    environment = {**os.environ, "RAY_AUTH_MODE": "token"}
    if token_file is not None:
        if not Path(token_file).is_file():
            raise ClusterConfigError(f"No token file '{token_file}': copy the head's "
                                     "~/.ray/auth_token (`ray get-auth-token` prints it).")
        environment["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    return command, environment


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def connect(ray, devices: Sequence[str], address: str | None) -> bool:
    """Make sure Ray runs and offers every one of ``devices``; True when started here. With
    no ``address``, a local instance offering them all is started; a Ray this process
    already joined is used as it is."""
    if address is not None:
        _check_reachable(address)
    started = not ray.is_initialized()
    if started and address is None:
        ray.init(address="local", resources={resource(d): 1.0 for d in devices},
                 include_dashboard=False, log_to_driver=False, logging_level="error")
    elif started:
        ray.init(address=address, log_to_driver=False, logging_level="error")
    offered = ray.cluster_resources()
    missing = [d for d in devices if resource(d) not in offered]
    if missing:
        if started:
            ray.shutdown()
        raise ClusterConfigError(
            f"No Ray node offers device(s) {', '.join(missing)}: start one on each with "
            f"`edgeweave worker --device NAME --address HEAD:PORT`.")
    return started


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as error:
        raise ClusterConfigError(f"The Ray head at '{address}' does not answer ({error}); "
                                 "start it with `ray start --head` on the gateway.") from None


def _offsets(ray, actors: dict[str, Any], timeout_s: float) -> dict[str, float]:
    """Each actor's clock minus the driver's, from the fastest of a few round trips."""
    offsets = {}
    for device, actor in actors.items():
        trips = []
        for _ in range(5):
            before = time.time()
            theirs = ray.get(actor.clock.remote(), timeout=timeout_s)
            after = time.time()
            trips.append((after - before, theirs - (before + after) / 2))
        offsets[device] = min(trips)[1]
    return offsets


def _moved(events: list[Event], shift: float) -> list[Event]:
    return [dataclasses.replace(e, start_s=e.start_s - shift, end_s=e.end_s - shift)
            for e in events]


class _Plain:
    """Ordinary actor calls, frame by frame, in a dependency order."""

    def __init__(self, ray, plan: Plan, actors, on_frame) -> None:
        self.ray, self.plan, self.actors, self.on_frame = ray, plan, actors, on_frame
        self.order = execution_order(plan)
        self.results: list[dict[str, Any]] = []

    def submit(self, frame: int, inputs: dict) -> dict[str, Any]:
        returned: dict[str, list] = {}
        for unit_id in self.order:
            unit = self.plan.unit(unit_id)
            if self.plan.graphs[unit.graph][unit.last].kind == "input":
                args = [(frame, inputs)]
            else:
                producers = dict.fromkeys(need.unit for need in unit.needs)
                args = [returned[p][targets(self.plan, p).index(unit.device)]
                        for p in producers]
            count = len(targets(self.plan, unit_id))
            refs = self.actors[unit.device].run.options(num_returns=count).remote(unit_id, *args)
            returned[unit_id] = list(refs) if count > 1 else [refs]
        return {unit_id: refs[-1] for unit_id, refs in returned.items()}

    def feed(self, frames, interval_s: float, timeout_s: float) -> list[float]:
        arrival, pending = [], []
        start = time.time()
        for frame, inputs in enumerate(frames):
            time.sleep(max(0.0, start + frame * interval_s - time.time()))
            arrival.append(time.time())
            pending.append(self.submit(frame, inputs))
        for refs in pending:
            self._collected(dict(zip(refs, self.ray.get(list(refs.values()), timeout=timeout_s))))
        return arrival

    def _collected(self, results: dict[str, Any]) -> None:
        self.results.append(results)
        if self.on_frame is not None:
            self.on_frame(len(self.results) - 1)

    def close(self) -> None:
        pass


class _Compiled(_Plain):
    """The plan compiled once as a Ray Compiled Graph; each frame one execution."""

    def __init__(self, ray, plan: Plan, actors, on_frame) -> None:
        super().__init__(ray, plan, actors, on_frame)
        from ray.dag import InputNode, MultiOutputNode

        nodes: dict[str, list] = {}
        with InputNode() as source:
            for unit_id in self.order:
                unit = self.plan.unit(unit_id)
                if self.plan.graphs[unit.graph][unit.last].kind == "input":
                    args = [source]
                else:
                    producers = dict.fromkeys(need.unit for need in unit.needs)
                    args = [nodes[p][targets(plan, p).index(unit.device)] for p in producers]
                count = len(targets(plan, unit_id))
                method = actors[unit.device].run
                node = (method.options(num_returns=count) if count > 1 else method).bind(
                    unit_id, *args)
                nodes[unit_id] = list(node) if count > 1 else [node]
            graph = MultiOutputNode([nodes[unit_id][-1] for unit_id in self.order])
        self.compiled = graph.experimental_compile(_max_inflight_executions=8)

    def feed(self, frames, interval_s: float, timeout_s: float) -> list[float]:
        arrival, pending = [], []
        start = time.time()
        for frame, inputs in enumerate(frames):
            if len(pending) == 8:  # the in-flight bound: collect the oldest first
                self._collect(pending.pop(0), timeout_s)
            time.sleep(max(0.0, start + frame * interval_s - time.time()))
            arrival.append(time.time())
            pending.append(self.compiled.execute((frame, inputs)))
        for ref in pending:
            self._collect(ref, timeout_s)
        return arrival

    def _collect(self, ref, timeout_s: float) -> None:
        self._collected(dict(zip(self.order, self.ray.get(ref, timeout=timeout_s))))

    def close(self) -> None:
        self.compiled.teardown()
