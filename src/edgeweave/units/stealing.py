"""Work stealing (seed 003): who runs each stealable task, decided once, at run time.

A *task* is a segment of stealable units (``Plan.pool``; ``units.segments`` makes a chain
of them one segment), named by its first unit; its takers are its first unit's. A home's
``Pool`` holds its tasks whose inputs from outside them are all there — *open* — and gives
each away once: to a taker that asks (``take``: the first open task it may take, frame by
frame, in the home's order) or to the home itself when it reaches the task (``claim``). A ``Thief`` is the asking side: the homes that offered it work, asked in
turn, one request at a time. Nobody polls: a device asks only when it has nothing to run,
a home with nothing left says so, and the home's next offer (sent when more units open)
brings the device back. The simulator and the local backend both follow these rules with
these classes, so their timelines of a stealing run can be laid side by side.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edgeweave.errors import PlanError
from edgeweave.units.plan import Need, Plan, Unit, layer_regions, reads
from edgeweave.units.segments import Segment, segments

Item = tuple[int, str]  # (frame, a task's first unit)


def tasks(plan: Plan) -> dict[str, Segment]:
    """Every stealable task of ``plan``, by its first unit, in a dependency order."""
    if not plan.pool:  # most plans: no segments to work out
        return {}
    return {s.units[0]: s for s in segments(plan) if s.units[0] in plan.pool}


def outside_needs(plan: Plan, task: Segment) -> tuple[Need, ...]:
    """What a task reads from units outside it: what its home hands a taker."""
    inside = set(task.units)
    return tuple(n for uid in task.units for n in plan.unit(uid).needs if n.unit not in inside)


def unshrunk(plan: Plan, task: Segment) -> Unit:
    """``task`` run without what it reads from other tasks (``Plan.fallback``): one fused
    stack of its layers — and of any layer before them that only other tasks compute —
    from what its home's own units hold, computing its last unit's region. It stands for
    that last unit: its result is read as the last unit's."""
    units = [plan.unit(uid) for uid in task.units]
    last, home = units[-1], units[0].device
    graph = plan.graphs[last.graph]
    layers = set(name for unit in units for name in unit.layers)
    while True:
        stack = Unit(f"{units[0].id}..{last.id}", last.graph,
                     tuple(sorted(layers, key=graph.index_of)), last.region, home)
        needs, missing = [], set()
        for layer, region in reads(stack, graph).items():
            producer = next((u for u in plan.units if u.graph == last.graph
                             and u.device == home and u.id not in plan.pool and not u.relay
                             and layer in u.layers
                             and layer_regions(u, graph)[layer].contains(region)), None)
            if producer is not None:
                needs.append(Need(producer.id, layer, region))
            elif graph[layer].kind == "input" or layer in layers:
                raise PlanError(f"Task {task.units[0]} cannot run unshrunk: no unit on its "
                                f"home '{home}' holds {region!r} of layer '{layer}'.")
            else:
                missing.add(layer)
        if not missing:
            return Unit(stack.id, stack.graph, stack.layers, stack.region, home, tuple(needs))
        layers |= missing


class Pool:
    """The stealable tasks homed on ``device``; safe to use from several threads.

    A task is *open* when all it reads from outside it is at the home. A task with a
    fallback (``Plan.fallback``) is also *early* once what it reads unshrunk is there but it
    is not open yet: it is given away (or claimed by the home) to run unshrunk only when no
    open task is left for the asker."""

    def __init__(self, plan: Plan, device: str,
                 every: Mapping[str, Segment] | None = None) -> None:
        self.device = device
        self.lock = threading.Lock()
        self.open: list[Item] = []
        self.early: list[Item] = []
        self.owner: dict[Item, str] = {}
        self.unshrunk: set[Item] = set()  # given away, or claimed, to run unshrunk
        self.adopt(plan, every)

    def adopt(self, plan: Plan, every: Mapping[str, Segment] | None = None) -> None:
        """Go on under ``plan`` (re-planned: the device may be home to more units);
        ``every`` is ``tasks(plan)`` where the caller has it already."""
        every = tasks(plan) if every is None else every
        with self.lock:
            self.plan = plan
            self.tasks = {first: task for first, task in every.items()
                          if task.device == self.device}
            self.fallback = set(plan.fallback) & set(self.tasks)
            self._rank = {u: i for i, u in enumerate(self.tasks)}

    @property
    def units(self) -> tuple[str, ...]:
        """The first units of the tasks homed here, in the home's order."""
        return tuple(self.tasks)

    def opened(self, frame: int, unit_ids: Iterable[str]) -> bool:
        """Open these tasks of ``frame`` (their inputs are here); whether any was new."""
        with self.lock:
            new = [(frame, u) for u in unit_ids
                   if (frame, u) not in self.owner and (frame, u) not in self.open]
            self.open = self._sorted(self.open + new)
            self.early = [item for item in self.early if item not in new]
            return bool(new)

    def arrived(self, frame: int, unit_ids: Iterable[str]) -> bool:
        """These tasks of ``frame`` can run unshrunk (what that reads is here); whether any
        became early."""
        with self.lock:
            new = [(frame, u) for u in unit_ids if u in self.fallback and (frame, u) not in
                   self.owner and (frame, u) not in self.open and (frame, u) not in self.early]
            self.early = self._sorted(self.early + new)
            return bool(new)

    def _sorted(self, items: list[Item]) -> list[Item]:
        return sorted(items, key=lambda item: (item[0], self._rank[item[1]]))

    def take(self, taker: str) -> tuple[Item, bool] | None:
        """The first open task ``taker`` may take, else the first early one (to run
        unshrunk: the second value), now its own; None if there is none."""
        with self.lock:
            for waiting, unshrunk in ((self.open, False), (self.early, True)):
                for item in waiting:
                    if taker in self.plan.pool[item[1]]:
                        waiting.remove(item)
                        self.owner[item] = taker
                        if unshrunk:
                            self.unshrunk.add(item)
                        return item, unshrunk
        return None

    def claim(self, frame: int, unit_id: str) -> bool:
        """Whether the home runs the task itself: nobody took it and the home may."""
        with self.lock:
            item = (frame, unit_id)
            if self.device not in self.plan.pool[unit_id] and item not in self.owner:
                return False
            owner = self.owner.setdefault(item, self.device)
            for waiting in (self.open, self.early):
                if item in waiting:
                    waiting.remove(item)
            return owner == self.device and item not in self.unshrunk

    def claim_unshrunk(self, frame: int, unit_id: str) -> bool:
        """Whether the home runs an early task itself, unshrunk (nobody took it, the home
        may, and it is not open)."""
        with self.lock:
            item = (frame, unit_id)
            if item not in self.early or self.device not in self.plan.pool[unit_id]:
                return False
            self.early.remove(item)
            self.owner[item] = self.device
            self.unshrunk.add(item)
            return True

    def skips(self, frame: int, unit_id: str) -> bool:
        """Whether the home passes over the task: another device took it, it ran unshrunk,
        or the home is not among its takers (it waits, open, for one that is)."""
        with self.lock:
            item = (frame, unit_id)
            owner = self.owner.get(item)
            return (owner is not None and (owner != self.device or item in self.unshrunk)) or (
                owner is None and self.device not in self.plan.pool[unit_id])

    def release(self, lost: str) -> bool:
        """Put back what device ``lost`` took (it died) — open, or early when it took it
        unshrunk; whether there was any."""
        with self.lock:
            back = [item for item, owner in self.owner.items() if owner == lost]
            for item in back:
                del self.owner[item]
            mine = [item for item in back if item[1] in self._rank]
            self.early = self._sorted(self.early + [i for i in mine if i in self.unshrunk])
            self.open = self._sorted(self.open + [i for i in mine if i not in self.unshrunk])
            self.unshrunk -= set(back)
            return bool(back)

    def forget(self, frame: int) -> None:
        """Drop what concerns a complete frame."""
        with self.lock:
            self.open = [item for item in self.open if item[0] != frame]
            self.early = [item for item in self.early if item[0] != frame]
            self.unshrunk = {item for item in self.unshrunk if item[0] != frame}
            for item in [item for item in self.owner if item[0] == frame]:
                del self.owner[item]


@dataclass
class Thief:
    """A device's side of stealing: homes that offered work, asked in turn."""

    device: str
    knows: set[str] = field(default_factory=set)
    asking: str | None = None
    turn: int = 0

    def ask(self) -> str | None:
        """The home to ask now, or None (a request is out, or no home offered work)."""
        if self.asking is not None or not self.knows:
            return None
        homes = sorted(self.knows)
        self.asking = homes[self.turn % len(homes)]
        self.turn += 1
        return self.asking

    def offered(self, home: str) -> None:
        """Home ``home`` has open units."""
        if home != self.device:
            self.knows.add(home)

    def answered(self, home: str, empty: bool) -> None:
        """The home answered: with a unit, or that it had none left for this device."""
        if self.asking == home:
            self.asking = None
        if empty:
            self.knows.discard(home)

    def lost(self, device: str) -> None:
        """Device ``device`` died: ask it nothing more."""
        self.answered(device, empty=True)
