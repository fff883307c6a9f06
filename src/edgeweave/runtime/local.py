"""The local backend: one OS process per device on this machine.

Each worker holds the plan as its device sees it — every unit's description, but only the
weights of its own units' layers (``Plan.for_device``) — and runs its units in the plan's
order, frame after frame, with its own torch thread budget (the device's ``threads``,
default 1). A unit runs as soon as the regions its needs name have arrived; its outputs go
straight to the devices whose units need them (once per device), through torch's
shared-memory queues — device to device, never through the coordinator. Outputs of the
model go to the coordinator, which feeds each frame's inputs to the devices of the input
units and, as in the simulator, stands for the first device: outputs computed elsewhere
travel back over the (emulated) link to it. Workers stamp events with the machine's monotonic clock, shared by all processes
here, so no clock correction is needed.

Emulation (optional, and named in the timeline's source when on): with
``emulate_links`` a transfer occupies its link — or its shared medium, across all
processes — for ``8 * bytes / bandwidth`` and is delivered ``latency`` later, as in the
simulator; with ``emulate_compute`` a unit lasts at least the cost model's time for it on
its device.

Faults are survived: a worker keeps what it computed until the coordinator says the frame
is complete. A worker whose process dies, or whose heartbeat stops for ``detect_s``, is
killed; ``planners.recover.without`` moves its units onto a survivor; every survivor
switches to the new plan, re-sends the results it holds to units that moved, and the
adopter recomputes the lost units of every unfinished frame. If no survivor can hold the
units, or a unit raises, the run stops with an error naming the device and the frame, and
every worker process is stopped.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Sequence

import torch
import torch.multiprocessing as mp

from edgeweave.cost import CostModel
from edgeweave.errors import EdgeweaveError, PlanError
from edgeweave.planners.recover import without
from edgeweave.runtime.inline import collect_outputs
from edgeweave.simulation import Event, Timeline, unit_compute_s
from edgeweave.units import Plan
from edgeweave.units.compute import Piece, compute_unit, crop, input_unit

HEARTBEAT_S = 0.25


class WorkerError(EdgeweaveError):
    """A device's worker failed, or died with no survivor able to take over."""


@dataclasses.dataclass(frozen=True)
class Measured:
    """What a distributed backend measured: outputs by model per frame, the timeline, and
    one line per fault survived."""

    outputs: list[dict]
    timeline: Timeline
    faults: tuple[str, ...]


def run_local(plan: Plan, frames: Sequence[dict[str, tuple[torch.Tensor, ...]]],
              interval_s: float = 0.0, timeout_s: float = 60.0, detect_s: float = 3.0,
              emulate_links: bool = False, emulate_compute: bool = False,
              on_frame: Callable[[int], None] | None = None) -> Measured:
    """Run ``frames`` (inputs by model, per frame) through ``plan`` in worker processes.

    ``on_frame(frame)`` is called as each frame completes; a worker silent for
    ``detect_s`` counts as dead; a run with no progress for ``timeout_s`` stops.
    """
    context = mp.get_context("spawn")
    inboxes = {device: context.Queue() for device in plan.order}
    results = context.Queue()
    media = {link.channel: (context.Value("d", 0.0), context.Lock())
             for link in plan.cluster.links} if emulate_links else {}
    emulation = _Emulation(media, emulate_compute)
    workers = {device: context.Process(target=_worker, name=f"edgeweave-{device}", daemon=True,
                                       args=(device, plan.for_device(device), inboxes, results,
                                             emulation))
               for device in plan.order}
    try:
        for process in workers.values():
            process.start()
        coordinator = _Coordinator(plan, workers, inboxes, results, timeout_s, detect_s)
        coordinator.wait_ready()
        return coordinator.run(frames, interval_s, emulation.label(), on_frame)
    finally:
        for inbox in inboxes.values():
            inbox.put(("stop",))
        for process in (p for p in workers.values() if p.pid is not None):
            process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join()


class _Coordinator:
    def __init__(self, plan: Plan, workers, inboxes, results, timeout_s: float,
                 detect_s: float) -> None:
        self.plan, self.workers, self.inboxes, self.results = plan, workers, inboxes, results
        self.timeout_s, self.detect_s = timeout_s, detect_s
        self.cost = CostModel.for_cluster(plan.cluster)
        self.expected = {(u.id, layer) for u in plan.units for layer in u.layers
                         if layer in plan.graphs[u.graph].outputs}
        self.events: list[Event] = []
        self.faults: list[str] = []
        self.lost: set[str] = set()
        self.seen = {device: time.monotonic() for device in workers}
        self.checked = time.monotonic()

    def receive(self, wait_s: float = 0.2):
        """The next message, or None after ``wait_s``: heartbeats are noted, not returned;
        a worker's error is raised."""
        try:
            message = self.results.get(timeout=wait_s)
        except queue.Empty:
            return None
        if message[0] == "alive":
            self.seen[message[1]] = time.monotonic()
            return None
        if message[0] == "error":
            _, device, frame, text = message
            raise WorkerError(f"Device '{device}' failed on frame {frame}: {text}")
        return message

    def wait_ready(self) -> None:
        ready: set[str] = set()
        deadline = time.monotonic() + self.timeout_s
        while ready != set(self.workers):
            message = self.receive()
            dead = [d for d, p in self.workers.items() if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                who = dead[0] if dead else sorted(set(self.workers) - ready)[0]
                raise WorkerError(f"The worker of device '{who}' did not start. Worker "
                                  "processes are spawned: a script that runs the local "
                                  "backend needs `if __name__ == '__main__':`.")
            if message is not None and message[0] == "ready":
                ready.add(message[1])
                self.seen[message[1]] = time.monotonic()

    def run(self, frames, interval_s: float, label: str, on_frame) -> Measured:
        self.frames = frames
        start = time.perf_counter()
        arrival = [start + f * interval_s for f in range(len(frames))]
        pieces: list[dict[tuple[str, str], list[Piece]]] = [{} for _ in frames]
        received: list[set] = [set() for _ in frames]
        done = [0.0] * len(frames)
        self.sent = 0
        progress = time.monotonic()
        while any(len(r) < len(self.expected) for r in received):
            while self.sent < len(frames) and time.perf_counter() >= arrival[self.sent]:
                arrival[self.sent] = time.perf_counter()
                self.send_inputs(self.sent)
                self.sent += 1
            pending = next(f for f, r in enumerate(received) if len(r) < len(self.expected))
            # wake for the next arrival, else at least every 50 ms to look at the workers
            next_arrival = arrival[self.sent] if self.sent < len(frames) else float("inf")
            message = self.receive(max(0.0, min(next_arrival - time.perf_counter(), 0.05)))
            if time.monotonic() - self.checked > 0.05:
                self.check_workers(pending)
            if message is None:
                if time.monotonic() - progress > self.timeout_s:
                    raise WorkerError(f"No progress for {self.timeout_s:.0f} s on frame "
                                      f"{pending}: a worker stopped answering.")
                continue
            progress = time.monotonic()
            if message[0] == "event":
                self.events.append(message[1])
            elif message[0] == "output":
                _, frame, unit, graph, layer, region, tensor, due = message
                if (unit, layer) in received[frame]:
                    continue  # recomputed after a fault: the first copy stands
                received[frame].add((unit, layer))
                pieces[frame].setdefault((graph, layer), []).append((region, _unpacked(tensor)))
                done[frame] = max(done[frame], due)  # an emulated way back may end later
                if len(received[frame]) == len(self.expected):
                    done[frame] = max(done[frame], time.perf_counter())
                    for device in self.live:
                        self.inboxes[device].put(("done", frame))
                    if on_frame is not None:
                        on_frame(frame)
        outputs = [collect_outputs(self.plan, frame_pieces) for frame_pieces in pieces]
        events = tuple(_shift(e, start) for e in self.events)
        timeline = Timeline(events, tuple(a - start for a in arrival),
                            tuple(d - start for d in done),
                            f"measured: local backend, {len(self.workers)} processes{label}")
        return Measured(outputs, timeline, tuple(self.faults))

    @property
    def live(self) -> list[str]:
        return [device for device in self.workers if device not in self.lost]

    def send_inputs(self, frame: int) -> None:
        for unit in self.plan.units:
            if self.plan.is_input(unit.id):
                tensors = tuple(_packed(t) for t in self.frames[frame][unit.graph])
                self.inboxes[unit.device].put(("input", frame, unit.graph, tensors))

    def check_workers(self, frame: int) -> None:
        now = self.checked = time.monotonic()
        for device in self.live:
            process = self.workers[device]
            if not process.is_alive():
                self.recover(device, f"died (exit code {process.exitcode})", frame)
            elif now - self.seen[device] > self.detect_s:
                process.kill()
                self.recover(device, f"stopped answering for {self.detect_s:.1f} s", frame)

    def recover(self, device: str, what: str, frame: int) -> None:
        self.lost.add(device)
        self.inboxes[device].cancel_join_thread()  # nobody reads it any more
        moved = self.plan.order[device]
        try:
            plan = without(self.plan, self.lost, self.cost)
        except PlanError as error:
            raise WorkerError(f"The worker of device '{device}' {what} while computing frame "
                              f"{frame}, and the run cannot go on: {error}") from None
        adopter = plan.unit(moved[0]).device if moved else None
        for survivor in self.live:
            graphs = plan.for_device(survivor).graphs if survivor == adopter else None
            self.inboxes[survivor].put(("replan", plan.units, plan.order, graphs, frame))
        inputs_moved = any(self.plan.is_input(uid) for uid in moved)
        self.plan = plan
        if inputs_moved:
            for again in range(frame, self.sent):
                self.send_inputs(again)
        self.faults.append(f"device '{device}' {what} during frame {frame}; its {len(moved)} "
                           f"unit(s) moved to '{adopter}' and unfinished frames recomputed"
                           if moved else f"device '{device}' {what}; it held no units")


# Below this size a tensor is cheaper pickled through the queue's pipe than moved to a
# fresh shared-memory segment (bench/queue_packing.py measures both).
BY_VALUE_BYTES = 1 << 18


def _packed(tensor: torch.Tensor):
    """What to put on a queue for ``tensor``: a numpy copy (pickled by value) when small;
    else a private copy already in shared memory — a queue would otherwise move the
    tensor's storage to shared memory later, in its feeder thread, while this thread may
    still read other views of that storage."""
    if tensor.numel() * tensor.element_size() <= BY_VALUE_BYTES:
        try:
            return tensor.detach().numpy().copy()
        except TypeError:  # a dtype numpy lacks (bfloat16): shared memory it is
            pass
    return tensor.clone(memory_format=torch.contiguous_format).share_memory_()


def _unpacked(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(value)


def _shift(event: Event, start: float) -> Event:
    return dataclasses.replace(event, start_s=event.start_s - start, end_s=event.end_s - start)


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
        threading.Thread(target=_beat, args=(device, results), daemon=True).start()
        worker.serve()
    except _Stop:
        return
    except Exception as error:  # reported to the coordinator, which names the device
        results.put(("error", device, worker.frame, f"{type(error).__name__}: {error}"))


def _beat(device: str, results) -> None:
    while True:
        results.put(("alive", device))
        time.sleep(HEARTBEAT_S)


class _Stop(Exception):
    pass


class _Replan(Exception):
    pass


class _FrameDone(Exception):
    pass


class _Worker:
    def __init__(self, device: str, plan: Plan, inboxes, results, emulation: _Emulation) -> None:
        self.device, self.plan, self.inboxes, self.results = device, plan, inboxes, results
        self.emulation = emulation
        self.cost = CostModel.for_cluster(plan.cluster) if emulation.compute else None
        self.store: dict[tuple, torch.Tensor] = {}  # (frame, unit, layer, region) -> tensor
        self.due: dict[tuple, float] = {}  # same keys -> emulated delivery time
        self.inputs: dict[tuple[int, str], tuple[torch.Tensor, ...]] = {}
        self.held: dict[tuple[int, str], dict[str, Piece]] = {}  # (frame, unit) -> outputs
        self.finished: set[int] = set()
        self.replans: list[tuple] = []
        self.frame = 0

    @property
    def units(self):
        return [self.plan.unit(uid) for uid in self.plan.order[self.device]]

    def serve(self) -> None:
        self.results.put(("ready", self.device))
        while True:
            try:
                if not self.units:  # nothing to do here unless a re-plan brings units
                    self.wait(lambda: False)
                elif self.frame not in self.finished:
                    for unit in self.units:
                        if (self.frame, unit.id) not in self.held:
                            self.run_unit(unit)
                self.frame += 1
            except _FrameDone:
                self.frame += 1
            except _Replan:
                while self.replans:
                    self.adopt(*self.replans.pop(0))

    def adopt(self, units, order, graphs, restart: int) -> None:
        """Switch to a re-planned plan: re-send held results to units that moved."""
        before = {unit.id: unit.device for unit in self.plan.units}
        self.plan = dataclasses.replace(self.plan, units=units, order=order,
                                        graphs=graphs or self.plan.graphs)
        moved = {unit.id for unit in units if unit.device != before[unit.id]}
        for (frame, unit_id), outputs in sorted(self.held.items()):
            self.forward(frame, self.plan.unit(unit_id), outputs, only_to=moved)
        self.frame = min(self.frame, restart)

    def wait(self, ready) -> None:
        frame = self.frame
        while not ready():
            message = self.inboxes[self.device].get()
            kind = message[0]
            if kind == "stop":
                raise _Stop
            if kind == "replan":
                self.replans.append(message[1:])
                raise _Replan
            if kind == "done":
                self.finish(message[1])
                if message[1] == frame:
                    raise _FrameDone
            elif message[1] in self.finished:
                continue  # a late copy for a frame already complete
            elif kind == "input":
                _, at, graph, tensors = message
                self.inputs[at, graph] = tuple(map(_unpacked, tensors))
            else:
                _, at, unit, layer, region, value, sent, due, source = message
                tensor = _unpacked(value)
                self.store[at, unit, layer, region] = tensor
                self.due[at, unit, layer, region] = due
                self.results.put(("event", Event("transfer", at, unit, f"{source}->{self.device}",
                                                 sent, max(due, time.perf_counter()),
                                                 tensor.numel() * tensor.element_size())))

    def finish(self, frame: int) -> None:
        """Drop everything held for a complete frame."""
        self.finished.add(frame)
        for table in (self.store, self.due, self.inputs, self.held):
            for key in [k for k in table if k[0] == frame]:
                del table[key]

    def run_unit(self, unit) -> None:
        graph, frame = self.plan.graphs[unit.graph], self.frame
        if self.plan.is_input(unit.id):
            self.wait(lambda: (frame, unit.graph) in self.inputs)
            outputs = input_unit(graph, unit, self.inputs[frame, unit.graph])
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
        self.held[frame, unit.id] = outputs
        self.results.put(("event", Event("compute", frame, unit.id, self.device, start, end)))
        self.forward(frame, unit, outputs)
        source = self.plan.cluster.devices[0].name  # where inputs arrive, outputs go back
        for layer, (region, tensor) in outputs.items():
            if layer in graph.outputs:
                due = time.perf_counter()
                if self.device != source:  # the way back, on the (emulated) link
                    size = tensor.numel() * tensor.element_size()
                    sent, due = self.emulation.transfer(self.plan, self.device, source, size,
                                                        due)
                    self.results.put(("event", Event("transfer", frame, unit.id,
                                                     f"{self.device}->{source}", sent, due,
                                                     size)))
                self.results.put(("output", frame, unit.id, unit.graph, layer, region,
                                  _packed(tensor), due))

    def forward(self, frame: int, unit, outputs: dict[str, Piece],
                only_to: set[str] | None = None) -> None:
        """Send each consumer's region of ``outputs``, once per device (to the units in
        ``only_to`` alone, when given)."""
        delivered = set()
        for consumer, need in self.plan.forwarding[unit.id]:
            if only_to is not None and consumer not in only_to:
                continue
            target = self.plan.unit(consumer).device
            key = (frame, unit.id, need.layer, need.region)
            if target == self.device:
                self.store[key] = crop(outputs[need.layer], need.region)
            elif (target, key) not in delivered:
                delivered.add((target, key))
                tensor = crop(outputs[need.layer], need.region)
                sent, due = self.emulation.transfer(self.plan, self.device, target,
                                                    tensor.numel() * tensor.element_size(),
                                                    time.perf_counter())
                self.inboxes[target].put(("data", *key, _packed(tensor), sent, due, self.device))
