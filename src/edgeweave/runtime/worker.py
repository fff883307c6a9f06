"""The device worker: what every backend runs on a device, whatever carries its messages.

A ``DeviceWorker`` holds the plan as its device sees it and executes the device's
*segments* (``units.segments``): runs of its units that receive from other devices only at
their start and send only at their end. It is told what arrives (``receive``,
``receive_inputs``), says when a segment can start (``missing``), runs it (``run``) and hands
back what must travel: one ``Parcel`` per device that consumes the segment's results, and a
``Report`` for the driver with the model outputs it computed and the events it recorded.
Transports (inline, local processes, Ray actors) only carry parcels and reports.

Inside a segment, consecutive units that compute whole tensors run as one compiled
``torch.fx`` module (``LayerGraph.compile``), split units by their region kernels back to
back; nothing is sent and no event message is made per unit.

The worker keeps what it computed (``held``) and received until the driver says a frame is
complete (``finish``), so that after a device is lost it can go on under the re-planned
plan (``adopt``), send again what units that moved need (``resend``) and skip the units it
already computed.

Work stealing (seed 003, ``Plan.pool``) fits this shape: a stealable task is a segment of
its own, its home hands a taker what it reads (``handover``) and the taker runs it like
any segment (``run``), because a worker computes any unit whose needs it has been sent and
returns parcels addressed by consumer, not by a fixed peer. Which task goes to whom follows
``units.stealing``, applied by each transport.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils._pytree import tree_map_only

from edgeweave.cost import CostModel
from edgeweave.errors import WorkerError
from edgeweave.units import Event, Need, Plan, Region, Unit, unit_compute_s
from edgeweave.units.timing import stack_compute_s
from edgeweave.units.compute import Piece, compute_unit, crop, input_unit, merge, value_bytes
from edgeweave.units.segments import Segment, segments
from edgeweave.runtime.emulation import Emulation
from edgeweave.units.stealing import outside_needs

Key = tuple[str, str, Region]  # a need's (producer unit, layer, region)
WARM_UP = -1  # the frame a worker rehearses on zeros before the first (``warm_up``)


@dataclass(frozen=True)
class Parcel:
    """The regions one segment of ``frame`` sends to one device: sent at ``sent_s``, usable
    there from ``due_s`` (later than sent when a link is emulated)."""

    frame: int
    sender: str
    unit: str  # the segment's last unit, which names the transfer in timelines
    tensors: Mapping[Key, torch.Tensor]
    sent_s: float
    due_s: float
    floor: int = 0  # frames below it are complete (the ray backend passes it on)
    # a stolen task's events, which its consumer reports: they reach the driver before the
    # frame can be complete, which the taker's own report might not
    events: tuple[Event, ...] = ()

    @property
    def n_bytes(self) -> int:
        """Bytes the parcel carries."""
        return sum(map(value_bytes, self.tensors.values()))


@dataclass(frozen=True)
class Report:
    """What a device tells the driver after a segment of ``frame``: the model outputs it
    computed (by unit and layer), back at the model's source device at ``due_s``; the
    events recorded since its previous report; ``last`` when the device has nothing more to
    do for the frame; per model, when its inputs of the frame reached this device
    (``arrived_s``, from a transport that notes it)."""

    device: str
    frame: int
    outputs: Mapping[tuple[str, str], Piece]
    events: tuple[Event, ...]
    last: bool
    due_s: float
    arrived_s: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Step:
    """Units of a segment run together: compiled (``module``) from the merged needs of
    ``inputs`` (layer -> needs), exporting ``exports``; or one unit by region kernels."""

    units: tuple[str, ...]
    module: torch.nn.Module | None = None
    inputs: tuple[tuple[str, tuple[Need, ...]], ...] = ()
    exports: tuple[tuple[str, str], ...] = ()  # (unit, layer) in the module's output order

    @property
    def label(self) -> str:
        """The step in a timeline: its unit, or its first and last units."""
        return self.units[0] if len(self.units) == 1 else f"{self.units[0]}..{self.units[-1]}"


class DeviceWorker:
    """The transport-independent worker of ``device`` (see the module's docstring)."""

    def __init__(self, device: str, plan: Plan, emulation: Emulation | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.device, self.emulation, self.clock = device, emulation or Emulation(), clock
        self.store: dict[tuple[int, Key], torch.Tensor] = {}
        self.due: dict[tuple[int, Key], float] = {}
        self.inputs: dict[tuple[int, str], tuple[torch.Tensor, ...]] = {}
        self.held: dict[tuple[int, str], dict[str, Piece]] = {}
        self.events: dict[int, list[Event]] = {}
        self.opened: set[tuple[int, str]] = set()  # (frame, model) the driver said are fed
        self.adopt(plan)

    # -- the plan -----------------------------------------------------------------------
    def adopt(self, plan: Plan) -> None:
        """Go on under ``plan`` (at the start, or re-planned after a device was lost)."""
        self.plan = plan
        self.cost = CostModel.for_cluster(plan.cluster) if self.emulation.compute else None
        self.segments = tuple(s for s in segments(plan) if s.device == self.device)
        self._steps_of.cache_clear()
        self._outside.cache_clear()
        self._task_needs.cache_clear()

    def resend(self, moved: set[str]) -> list[tuple[str, Parcel]]:
        """Parcels of every result held for units in ``moved`` (they changed device)."""
        parcels = []
        for frame in sorted({frame for frame, _ in self.held}):
            units = [uid for f, uid in self.held if f == frame]
            parcels += self._parcels(frame, units, only_to=moved)
        return parcels

    def finish(self, frame: int) -> None:
        """Forget everything held for a complete frame."""
        for table in (self.store, self.due, self.inputs, self.held):
            for key in [k for k in table if k[0] == frame]:
                del table[key]
        self.events.pop(frame, None)
        self.opened = {key for key in self.opened if key[0] != frame}

    def warm_up(self) -> list[tuple[str, Parcel]]:
        """Run each of the device's segments once on zeros, before the first frame, and
        return the parcels of that rehearsal (frame ``WARM_UP``), which a transport may
        send to warm its channels too. The first call of a compiled segment, or of a kernel
        at a new shape (allocations, oneDNN's primitives), costs far more than the next: a
        plan of many differently sized bands would pay seconds in its first frame, against
        tenths in the next. Nothing is emulated. Best effort: a model that cannot run on
        zeros starts cold, and its first real frame reports whatever is wrong."""
        saved = self.emulation, self.cost
        self.emulation, self.cost = Emulation(), None
        sent: list[tuple[str, Parcel]] = []
        # a compiled step that fails prints fx's own report to stderr before raising: here,
        # on zeros (a tuple read as one tensor, say), that is noise, not news
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                for segment in self.segments:
                    sent += self._rehearse(segment)
        except Exception:  # noqa: BLE001 - zeros are not the model's data; see above
            pass
        finally:
            self.emulation, self.cost = saved
            self.finish(WARM_UP)
        return sent

    def _rehearse(self, segment: Segment) -> list[tuple[str, Parcel]]:
        """One segment run on zeros as frame ``WARM_UP``: its parcels."""
        first = self.plan.unit(segment.units[0])
        graph = self.plan.graphs[first.graph]
        if self.plan.is_input(first.id):
            self.inputs[WARM_UP, first.graph] = tuple(
                _zeros(graph, name, Region.full(graph[name].output_shape))
                for name in graph.inputs)
        for need in self._outside(segment):
            if not self._here(WARM_UP, need):
                self.store[WARM_UP, (need.unit, need.layer, need.region)] = _zeros(
                    graph, need.layer, need.region)
        return self.run(WARM_UP, segment)[0]

    # -- what arrives -------------------------------------------------------------------
    def receive(self, parcel: Parcel) -> None:
        """Keep the regions a parcel brings; a transfer event records its journey."""
        for key, tensor in parcel.tensors.items():
            self.store[parcel.frame, key] = tensor
            self.due[parcel.frame, key] = parcel.due_s
        self._record(Event("transfer", parcel.frame, parcel.unit,
                           f"{parcel.sender}->{self.device}", parcel.sent_s,
                           max(parcel.due_s, self.clock()), parcel.n_bytes))

    def receive_inputs(self, frame: int, graph: str, tensors: tuple[torch.Tensor, ...]) -> None:
        """Keep a frame's inputs of model ``graph`` (for this device's input units)."""
        self.inputs[frame, graph] = tensors

    def open(self, frame: int, graph: str) -> None:
        """The driver fed ``frame`` of model ``graph``: a segment that reads nothing from
        outside (``unprompted``) may run it now, not before."""
        self.opened.add((frame, graph))

    def missing(self, frame: int, segment: Segment) -> int:
        """How many of the inputs a segment reads from outside have not arrived (for a
        segment that reads nothing, whether its frame is not yet fed)."""
        first = self.plan.unit(segment.units[0])
        if self.plan.is_input(first.id):
            return int((frame, first.graph) not in self.inputs)
        outside = self._outside(segment)
        if not outside:
            return int((frame, first.graph) not in self.opened)
        return sum(1 for need in outside if not self._here(frame, need))

    def has_needs(self, frame: int, task: Segment) -> bool:
        """Whether everything a stealable task reads from outside it is here (computed or
        received) for ``frame``."""
        return all(self._here(frame, need) for need in self._task_needs(task))

    def handover(self, frame: int, task: Segment, taker: str, whole: Unit | None = None
                 ) -> Parcel:
        """What device ``taker`` needs to run stealable ``task`` of ``frame`` — or, given
        ``whole``, the task unshrunk (``units.stealing.unshrunk``) — from what this device
        (its home) holds."""
        needs = whole.needs if whole is not None else self._task_needs(task)
        tensors = {(n.unit, n.layer, n.region): self._value(frame, n) for n in needs}
        size = sum(map(value_bytes, tensors.values()))
        sent, due = self.emulation.transfer(self.plan, self.device, taker, size, self.clock())
        return Parcel(frame, self.device, task.units[-1], tensors, sent, due)

    def has_stack_needs(self, frame: int, stack: Unit) -> bool:
        """Whether all a task run unshrunk reads is here for ``frame``."""
        return all(self._here(frame, need) for need in stack.needs)

    def run_unshrunk(self, frame: int, stack: Unit, task: Segment
                     ) -> tuple[list[tuple[str, Parcel]], Report]:
        """Run a stealable task as its unshrunk ``stack`` (whose needs are here): its result
        is held, sent and reported as the task's last unit's."""
        due = max((self.due.get((frame, (n.unit, n.layer, n.region)), 0.0)
                   for n in stack.needs), default=0.0)
        _sleep_until(due, self.clock)
        last, start = task.units[-1], self.clock()
        graph = self.plan.graphs[stack.graph]
        keep = set(self.plan.unit(last).layers) & self.plan.read_after[last]
        try:
            self.held[frame, last] = compute_unit(
                graph, stack, [(n, self._value(frame, n)) for n in stack.needs], keep)
        except Exception as error:
            raise WorkerError(f"Device '{self.device}' failed on frame {frame} (unit "
                              f"{stack.id}): {type(error).__name__}: {error}") from None
        if self.cost is not None:
            predicted = start + stack_compute_s(self.plan, self.cost, stack, on=self.device)
            _sleep_until(predicted, self.clock)
        self._record(Event("compute", frame, stack.id, self.device, start, self.clock()))
        return self._parcels(frame, (last,)), self._report(frame, Segment(self.device, (last,)))

    def computed(self, frame: int, segment: Segment) -> bool:
        """Whether every unit of a segment is held for ``frame`` (computed before a re-plan)."""
        return all((frame, uid) in self.held for uid in segment.units)

    # -- running ------------------------------------------------------------------------
    def run(self, frame: int, segment: Segment) -> tuple[list[tuple[str, Parcel]], Report]:
        """Run a segment of ``frame`` whose inputs are all here (``missing`` is 0): the
        parcels to send (by device) and the report for the driver."""
        due = max((self.due.get((frame, (n.unit, n.layer, n.region)), 0.0)
                   for n in self._outside(segment)), default=0.0)
        _sleep_until(due, self.clock)  # emulated data still on the wire
        for whole_step in self._steps_of(segment):
            # after a re-plan a step may join units computed before it (held) to adopted
            # ones: only those not held run, each by its region kernels
            pending = [uid for uid in whole_step.units if (frame, uid) not in self.held]
            parts = ([whole_step] if len(pending) == len(whole_step.units)
                     else [_Step((uid,)) for uid in pending])
            for step in parts:
                self._run_step(frame, step)
        parcels = self._parcels(frame, segment.units, inside=segment.units)
        return parcels, self._report(frame, segment)

    def _run_step(self, frame: int, step: _Step) -> None:
        """Compute a step (at least its predicted time, when emulated) and record it."""
        start = self.clock()
        try:
            self._compute(frame, step)
        except Exception as error:  # named for the driver: device, frame and cause
            raise WorkerError(f"Device '{self.device}' failed on frame {frame} (unit "
                              f"{step.label}): {type(error).__name__}: {error}") from None
        if self.cost is not None:  # last at least the device's predicted time
            predicted = start + sum(unit_compute_s(self.plan, self.cost, uid, on=self.device)
                                    for uid in step.units)
            _sleep_until(predicted, self.clock)
        self._record(Event("compute", frame, step.label, self.device, start, self.clock()))

    def _compute(self, frame: int, step: _Step) -> None:
        if step.module is None:
            unit = self.plan.unit(step.units[0])
            graph = self.plan.graphs[unit.graph]
            if self.plan.is_input(unit.id):
                outputs = input_unit(graph, unit, self.inputs[frame, unit.graph])
            else:
                outputs = compute_unit(graph, unit, [(n, self._value(frame, n))
                                                     for n in unit.needs],
                                       self.plan.read_after[unit.id])
            self.held[frame, unit.id] = outputs
            return
        arguments = [merge([(n.region, self._value(frame, n)) for n in needs])[1]
                     for _, needs in step.inputs]
        with torch.no_grad():
            values = step.module(*arguments)
        for uid in step.units:
            self.held.setdefault((frame, uid), {})
        for (uid, layer), value in zip(step.exports, values, strict=True):
            self.held[frame, uid][layer] = (self.plan.produced(uid)[layer], value)

    def _here(self, frame: int, need: Need) -> bool:
        return (frame, need.unit) in self.held or (
            frame, (need.unit, need.layer, need.region)) in self.store

    def _value(self, frame: int, need: Need) -> torch.Tensor:
        if (frame, need.unit) in self.held:
            return crop(self.held[frame, need.unit][need.layer], need.region)
        return self.store[frame, (need.unit, need.layer, need.region)]

    def _parcels(self, frame: int, units: Sequence[str], only_to: set[str] | None = None,
                 inside: Collection[str] = ()) -> list[tuple[str, Parcel]]:
        """Parcels of ``units``' results for their consumers' devices, except consumers in
        ``inside`` (a stolen task's own units, which read each other where it runs)."""
        by_device: dict[str, dict[Key, torch.Tensor]] = {}
        for uid in units:
            for consumer, need in self.plan.forwarding[uid]:
                target = self.plan.unit(consumer).device
                if target == self.device or consumer in inside or (
                        only_to is not None and consumer not in only_to):
                    continue
                by_device.setdefault(target, {})[need.unit, need.layer, need.region] = crop(
                    self.held[frame, uid][need.layer], need.region)
        parcels = []
        for target, tensors in sorted(by_device.items()):
            size = sum(map(value_bytes, tensors.values()))
            sent, due = self.emulation.transfer(self.plan, self.device, target, size,
                                                self.clock())
            parcels.append((target, Parcel(frame, self.device, units[-1], tensors, sent, due)))
        return parcels

    def _report(self, frame: int, segment: Segment) -> Report:
        outputs: dict[tuple[str, str], Piece] = {}
        for uid in segment.units:
            unit = self.plan.unit(uid)
            for layer in unit.layers:
                if layer in self.plan.graphs[unit.graph].outputs:
                    outputs[uid, layer] = self.held[frame, uid][layer]
        due = self.clock()
        source = self.plan.sources[self.plan.unit(segment.units[0]).graph]  # outputs go back
        if outputs and self.device != source:  # the way back, on the (emulated) link
            size = sum(value_bytes(t) for _, t in outputs.values())
            sent, due = self.emulation.transfer(self.plan, self.device, source, size, due)
            self._record(Event("transfer", frame, segment.units[-1],
                               f"{self.device}->{source}", sent, due, size))
        last = bool(self.segments) and segment == self.segments[-1]
        return Report(self.device, frame, outputs, tuple(self.events.pop(frame, ())), last, due)

    def _record(self, event: Event) -> None:
        self.events.setdefault(event.frame, []).append(event)

    # -- segments as steps --------------------------------------------------------------
    @functools.lru_cache(maxsize=None)  # noqa: B019 - asked after every message; cleared on adopt
    def _outside(self, segment: Segment) -> tuple[Need, ...]:
        return outside(self.plan, segment, self.device)

    @functools.lru_cache(maxsize=None)  # noqa: B019 - asked after every message; cleared on adopt
    def _task_needs(self, task: Segment) -> tuple[Need, ...]:
        return outside_needs(self.plan, task)

    @functools.lru_cache(maxsize=None)  # noqa: B019 - one worker per device, cleared on adopt
    def _steps_of(self, segment: Segment) -> tuple[_Step, ...]:
        steps: list[_Step] = []
        run: list[Unit] = []
        for uid in segment.units:
            unit = self.plan.unit(uid)
            if _whole(self.plan, unit, {u.id for u in run}):
                run.append(unit)
                continue
            if run:
                steps.append(self._compiled(run))
                run = []
            steps.append(_Step((uid,)))
        if run:
            steps.append(self._compiled(run))
        return tuple(steps)

    def _compiled(self, run: list[Unit]) -> _Step:
        if len(run) == 1 and len(run[0].layers) == 1 and not run[0].needs:
            return _Step((run[0].id,))
        graph = self.plan.graphs[run[0].graph]
        inside = {unit.id for unit in run}
        inputs: dict[str, list[Need]] = {}
        for unit in run:
            for need in unit.needs:
                if need.unit not in inside:
                    inputs.setdefault(need.layer, []).append(need)
        exports = [(unit.id, layer) for unit in run for layer in unit.layers
                   if layer in graph.outputs or any(
                       consumer not in inside and need.unit == unit.id and need.layer == layer
                       for consumer, need in self.plan.forwarding[unit.id])]
        layers = [layer for unit in run for layer in unit.layers]
        module = graph.compile(layers, list(inputs), [layer for _, layer in exports])
        return _Step(tuple(unit.id for unit in run), module,
                     tuple((layer, tuple(needs)) for layer, needs in inputs.items()),
                     tuple(exports))


def outside(plan: Plan, segment: Segment, device: str) -> tuple[Need, ...]:
    """What a segment run on ``device`` (its own, or a taker's) reads from other devices,
    or from stealable units."""
    inside = set(segment.units)
    return tuple(need for uid in segment.units for need in plan.unit(uid).needs
                 if need.unit not in inside and (need.unit in plan.pool
                                                 or plan.unit(need.unit).device != device))


def unprompted(plan: Plan) -> dict[str, set[str]]:
    """Per model, the devices with a segment of it that reads nothing from outside and is
    no model input (an ``arange``, a buffer): nothing arrives to start it, so the driver
    tells them when each frame is fed (``DeviceWorker.open``), lest they run ahead."""
    found: dict[str, set[str]] = {}
    for segment in segments(plan):
        first = segment.units[0]
        if (first not in plan.pool and not plan.is_input(first)
                and not outside(plan, segment, segment.device)):
            found.setdefault(plan.unit(first).graph, set()).add(segment.device)
    return found


def _zeros(graph, layer: str, region: Region) -> torch.Tensor:
    return torch.zeros(region.shape, dtype=getattr(torch, graph[layer].dtype, torch.float32))


def _sleep_until(moment: float, clock: Callable[[], float]) -> None:
    """Wait until ``clock()`` reaches ``moment`` (read once: it moves while we look)."""
    left = moment - clock()
    if left > 0:
        time.sleep(left)


def _whole(plan: Plan, unit: Unit, run: Collection[str] = ()) -> bool:
    """Whether a unit computes the whole output of each of its layers from whole inputs,
    those it reads from units of ``run`` (whole units compiled before it) whatever part it
    reads (then it can run inside a compiled module, which holds their whole outputs)."""
    if plan.is_input(unit.id) or unit.relay:
        return False
    graph = plan.graphs[unit.graph]
    for layer, region in plan.produced(unit.id).items():
        shape = graph[layer].output_shape
        if shape is not None and region != Region.full(shape):
            return False
    needed: dict[str, list[Region]] = {}
    for need in unit.needs:
        if need.unit not in run:
            needed.setdefault(need.layer, []).append(need.region)
    for layer, regions in needed.items():
        shape = graph[layer].output_shape
        if shape is None:
            continue
        hull = regions[0]
        for region in regions[1:]:
            hull = hull.hull(region)
        if hull != Region.full(shape):
            return False
    return True


def frame_outputs(plan: Plan, reports: Sequence[Report]) -> dict[tuple[str, str], list[Piece]]:
    """The pieces of every model output in a frame's reports, by (model, layer); a unit
    computed twice (again after a re-plan) counts once."""
    pieces: dict[tuple[str, str], list[Piece]] = {}
    seen: set[tuple[str, str]] = set()
    for report in reports:
        for (uid, layer), piece in report.outputs.items():
            if (uid, layer) not in seen:
                seen.add((uid, layer))
                pieces.setdefault((plan.unit(uid).graph, layer), []).append(piece)
    return pieces


def replace_tensors(parcel: Parcel, change: Callable[[torch.Tensor], object]) -> Parcel:
    """The parcel with every tensor changed by ``change`` (copied, as a transfer would)."""
    return dataclasses.replace(parcel, tensors={k: tree_map_only(torch.Tensor, change, t)
                                                for k, t in parcel.tensors.items()})
