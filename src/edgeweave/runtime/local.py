"""The local backend: one OS process per device on this machine.

Each worker runs its device's units in the plan's order, frame after frame, with its own
torch thread budget (the device's ``threads``, default 1). A unit runs as soon as the
regions its needs name have arrived; its outputs go straight to the devices whose units
need them (once per device), through torch's shared-memory queues — device to device,
never through the coordinator. Outputs of the model go to the coordinator, which plays
the device where inputs arrive. Workers stamp events with the machine's monotonic clock,
shared by all processes here, so no clock correction is needed.

Emulation (optional, and named in the timeline's source when on): with
``emulate_links`` a transfer occupies its link — or its shared medium, across all
processes — for ``8 * bytes / bandwidth`` and is delivered ``latency`` later, as in the
simulator; with ``emulate_compute`` a unit lasts at least the cost model's time for it on
its device.

Faults are detected, not yet survived: a worker that raises, dies or stops answering for
``timeout_s`` ends the run with an error naming the device and frame, and every worker
process is stopped.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence

import torch
import torch.multiprocessing as mp

from edgeweave.cost import CostModel
from edgeweave.errors import EdgeweaveError
from edgeweave.runtime.inline import collect_outputs
from edgeweave.simulation import Event, Timeline, unit_compute_s
from edgeweave.units import Plan
from edgeweave.units.compute import Piece, compute_unit, crop


class WorkerError(EdgeweaveError):
    """A device's worker failed, died or stopped answering."""


def run_local(plan: Plan, frames: Sequence[dict[str, tuple[torch.Tensor, ...]]],
              interval_s: float = 0.0, timeout_s: float = 60.0, emulate_links: bool = False,
              emulate_compute: bool = False) -> tuple[list[dict], Timeline]:
    """Run ``frames`` (inputs by model, per frame) through ``plan`` in worker processes;
    returns each frame's outputs by model and the measured timeline."""
    context = mp.get_context("spawn")
    inboxes = {device: context.Queue() for device in plan.order}
    results = context.Queue()
    media = {link.channel: (context.Value("d", 0.0), context.Lock())
             for link in plan.cluster.links} if emulate_links else {}
    emulation = _Emulation(media, emulate_compute)
    workers = {device: context.Process(target=_worker, name=f"edgeweave-{device}", daemon=True,
                                       args=(device, plan, inboxes, results, emulation))
               for device in plan.order}
    try:
        for process in workers.values():
            process.start()
        coordinator = _Coordinator(plan, workers, results, timeout_s, emulation.label())
        coordinator.wait_ready()
        return coordinator.run(frames, interval_s, inboxes)
    finally:
        for inbox in inboxes.values():
            inbox.put(("stop",))
        for process in (p for p in workers.values() if p.pid is not None):
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join()


class _Coordinator:
    def __init__(self, plan: Plan, workers, results, timeout_s: float, label: str) -> None:
        self.plan, self.workers, self.results, self.timeout_s = plan, workers, results, timeout_s
        self.label = label
        self.source = plan.cluster.devices[0].name
        self.expected = sum(1 for u in plan.units for layer in u.layers
                            if layer in plan.graphs[u.graph].outputs)
        self.events: list[Event] = []

    def receive(self, what: str, frame: int | None = None):
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return self.results.get(timeout=0.2)
            except queue.Empty:
                for device, process in self.workers.items():
                    if not process.is_alive():
                        raise WorkerError(f"The worker of device '{device}' died (exit code "
                                          f"{process.exitcode}) while {what}"
                                          + (f" frame {frame}" if frame is not None else "")
                                          + ".") from None
                if time.monotonic() > deadline:
                    raise WorkerError(f"No answer for {self.timeout_s:.0f} s while {what}"
                                      + (f" frame {frame}" if frame is not None else "")
                                      + ": a worker stopped answering.") from None

    def wait_ready(self) -> None:
        ready = set()
        while ready != set(self.workers):
            try:
                message = self.receive("starting the workers")
            except WorkerError as error:
                raise WorkerError(f"{error} Worker processes are spawned: a script that runs "
                                  "the local backend needs `if __name__ == '__main__':`.") \
                    from None
            if message[0] == "error":
                raise WorkerError(f"Device '{message[1]}' failed to start: {message[3]}")
            ready.add(message[1])

    def run(self, frames, interval_s, inboxes) -> tuple[list[dict], Timeline]:
        start = time.perf_counter()
        arrival = [start + f * interval_s for f in range(len(frames))]
        pieces: list[dict[tuple[str, str], list[Piece]]] = [{} for _ in frames]
        received, done = [0] * len(frames), [0.0] * len(frames)
        sent = 0
        while min(received, default=self.expected) < self.expected:
            while sent < len(frames) and time.perf_counter() >= arrival[sent]:
                arrival[sent] = time.perf_counter()
                for name, tensors in frames[sent].items():
                    inboxes[self.source].put(("input", sent, name,
                                              tuple(_shareable(t) for t in tensors)))
                sent += 1
            pending = next(f for f, n in enumerate(received) if n < self.expected)
            message = self.receive("computing", pending) if sent == len(frames) else \
                self._poll()
            if message is None:
                continue
            kind = message[0]
            if kind == "error":
                _, device, frame, text = message
                raise WorkerError(f"Device '{device}' failed on frame {frame}: {text}")
            if kind == "event":
                self.events.append(message[1])
            elif kind == "output":
                _, frame, graph, layer, region, tensor = message
                pieces[frame].setdefault((graph, layer), []).append((region, tensor))
                received[frame] += 1
                done[frame] = time.perf_counter()
        outputs = [collect_outputs(self.plan, frame_pieces) for frame_pieces in pieces]
        events = tuple(sorted((_shift(e, start) for e in self.events),
                              key=lambda e: (e.start_s, e.kind, e.frame, e.unit)))
        timeline = Timeline(events, tuple(a - start for a in arrival),
                            tuple(d - start for d in done),
                            f"measured: local backend, {len(self.workers)} processes{self.label}")
        return outputs, timeline

    def _poll(self):
        try:
            return self.results.get(timeout=0.001)
        except queue.Empty:
            return None



def _shareable(tensor: torch.Tensor) -> torch.Tensor:
    # A queue moves a tensor's storage to shared memory later, in its feeder thread, while
    # this thread may still read other views of that storage: hand it a private copy,
    # already in shared memory.
    return tensor.clone(memory_format=torch.contiguous_format).share_memory_()


def _shift(event: Event, start: float) -> Event:
    return Event(event.kind, event.frame, event.unit, event.resource, event.start_s - start,
                 event.end_s - start, event.n_bytes)


class _Emulation:
    """What a worker emulates: shared link clocks (per medium) and compute times."""

    def __init__(self, media: dict, compute: bool) -> None:
        self.media, self.compute = media, compute

    def label(self) -> str:
        parts = (["emulated links"] if self.media else []) + (
            ["emulated compute"] if self.compute else [])
        return f", {' and '.join(parts)}" if parts else ""

    def transfer(self, plan: Plan, src: str, dst: str, n_bytes: int, now: float) -> tuple:
        """Occupy the link from ``src`` to ``dst``: (start, delivery time)."""
        if not self.media:
            return now, now
        link = plan.cluster.link(src, dst)
        free_at, lock = self.media[link.channel]
        with lock:  # the clock is shared with other processes: read and move it together
            start = max(now, free_at.value)
            end = start + 8.0 * n_bytes / link.bandwidth_bps
            free_at.value = end
        return start, end + link.latency_s


def _worker(device: str, plan: Plan, inboxes, results, emulation: _Emulation) -> None:
    worker = _Worker(device, plan, inboxes, results, emulation)
    try:
        torch.set_num_threads(plan.cluster.device(device).threads or 1)
        worker.serve()
    except _Stop:
        return
    except Exception as error:  # reported to the coordinator, which names the device
        results.put(("error", device, worker.frame, f"{type(error).__name__}: {error}"))


class _Stop(Exception):
    pass


class _Worker:
    def __init__(self, device: str, plan: Plan, inboxes, results, emulation: _Emulation) -> None:
        self.device, self.plan, self.inboxes, self.results = device, plan, inboxes, results
        self.emulation = emulation
        self.cost = CostModel.for_cluster(plan.cluster) if emulation.compute else None
        self.due: dict[tuple, float] = {}  # (frame, unit, layer, region) -> delivery time
        self.units = [plan.unit(uid) for uid in plan.order[device]]
        self.store: dict[tuple, torch.Tensor] = {}  # (frame, unit, layer, region) -> tensor
        self.inputs: dict[tuple[int, str], tuple[torch.Tensor, ...]] = {}
        self.frame = 0

    def serve(self) -> None:
        self.results.put(("ready", self.device))
        while True:
            for unit in self.units:
                self.run_unit(unit)
            # every unit of this frame is done here: its received data is no longer needed
            self.store = {k: v for k, v in self.store.items() if k[0] > self.frame}
            self.due = {k: v for k, v in self.due.items() if k[0] > self.frame}
            self.inputs = {k: v for k, v in self.inputs.items() if k[0] > self.frame}
            self.frame += 1

    def wait(self, ready) -> None:
        while not ready():
            message = self.inboxes[self.device].get()
            if message[0] == "stop":
                raise _Stop
            if message[0] == "input":
                _, frame, graph, tensors = message
                self.inputs[frame, graph] = tensors
            else:
                _, frame, unit, layer, region, tensor, sent, due, source = message
                self.store[frame, unit, layer, region] = tensor
                self.due[frame, unit, layer, region] = due
                self.results.put(("event", Event("transfer", frame, unit,
                                                 f"{source}->{self.device}", sent,
                                                 max(due, time.perf_counter()),
                                                 tensor.numel() * tensor.element_size())))

    def run_unit(self, unit) -> None:
        graph, frame = self.plan.graphs[unit.graph], self.frame
        if graph[unit.last].kind == "input":
            self.wait(lambda: (frame, unit.graph) in self.inputs)
            tensor = self.inputs[frame, unit.graph][graph.inputs.index(unit.last)]
            outputs = {unit.last: (unit.region, tensor[unit.region.slices()])}
            start = end = time.perf_counter()
        else:
            keys = [(frame, n.unit, n.layer, n.region) for n in unit.needs]
            self.wait(lambda: all(key in self.store for key in keys))
            due = max((self.due.get(key, 0.0) for key in keys), default=0.0)
            if due > time.perf_counter():  # emulated data still on the wire
                time.sleep(due - time.perf_counter())
            start = time.perf_counter()
            received = [(need, self.store[key]) for need, key in zip(unit.needs, keys)]
            outputs = compute_unit(graph, unit, received)
            if self.cost is not None:  # last at least the device's predicted time
                predicted = start + unit_compute_s(self.plan, self.cost, unit.id)
                if predicted > time.perf_counter():
                    time.sleep(predicted - time.perf_counter())
            end = time.perf_counter()
        self.results.put(("event", Event("compute", frame, unit.id, self.device, start, end)))
        self.forward(unit, outputs)

    def forward(self, unit, outputs: dict[str, Piece]) -> None:
        frame, graph = self.frame, self.plan.graphs[unit.graph]
        delivered = set()
        for consumer, need in self.plan.forwarding[unit.id]:
            target = self.plan.unit(consumer).device
            key = (frame, unit.id, need.layer, need.region)
            if target == self.device:
                self.store[key] = crop(outputs[need.layer], need.region)
            elif (target, key) not in delivered:
                delivered.add((target, key))
                tensor = _shareable(crop(outputs[need.layer], need.region))
                sent, due = self.emulation.transfer(self.plan, self.device, target,
                                                    tensor.numel() * tensor.element_size(),
                                                    time.perf_counter())
                self.inboxes[target].put(("data", *key, tensor, sent, due, self.device))
        for layer, (region, tensor) in outputs.items():
            if layer in graph.outputs:
                self.results.put(("output", frame, unit.graph, layer, region, _shareable(tensor)))

