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

from edgeweave.units.plan import Need, Plan
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


class Pool:
    """The stealable tasks homed on ``device``; safe to use from several threads."""

    def __init__(self, plan: Plan, device: str,
                 every: Mapping[str, Segment] | None = None) -> None:
        self.device = device
        self.lock = threading.Lock()
        self.open: list[Item] = []
        self.owner: dict[Item, str] = {}
        self.adopt(plan, every)

    def adopt(self, plan: Plan, every: Mapping[str, Segment] | None = None) -> None:
        """Go on under ``plan`` (re-planned: the device may be home to more units);
        ``every`` is ``tasks(plan)`` where the caller has it already."""
        every = tasks(plan) if every is None else every
        with self.lock:
            self.plan = plan
            self.tasks = {first: task for first, task in every.items()
                          if task.device == self.device}
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
            return bool(new)

    def _sorted(self, items: list[Item]) -> list[Item]:
        return sorted(items, key=lambda item: (item[0], self._rank[item[1]]))

    def take(self, taker: str) -> Item | None:
        """The first open task ``taker`` may take, now its own; None if there is none."""
        with self.lock:
            for item in self.open:
                if taker in self.plan.pool[item[1]]:
                    self.open.remove(item)
                    self.owner[item] = taker
                    return item
        return None

    def claim(self, frame: int, unit_id: str) -> bool:
        """Whether the home runs the task itself: nobody took it and the home may."""
        with self.lock:
            item = (frame, unit_id)
            if self.device not in self.plan.pool[unit_id] and item not in self.owner:
                return False
            owner = self.owner.setdefault(item, self.device)
            if item in self.open:
                self.open.remove(item)
            return owner == self.device

    def skips(self, frame: int, unit_id: str) -> bool:
        """Whether the home passes over the task: another device took it, or the home is
        not among its takers (it waits, open, for one that is)."""
        with self.lock:
            owner = self.owner.get((frame, unit_id))
            return (owner is not None and owner != self.device) or (
                owner is None and self.device not in self.plan.pool[unit_id])

    def release(self, lost: str) -> bool:
        """Open again what device ``lost`` took (it died); whether there was any."""
        with self.lock:
            back = [item for item, owner in self.owner.items() if owner == lost]
            for item in back:
                del self.owner[item]
            self.open = self._sorted(self.open + [i for i in back if i[1] in self._rank])
            return bool(back)

    def forget(self, frame: int) -> None:
        """Drop what concerns a complete frame."""
        with self.lock:
            self.open = [item for item in self.open if item[0] != frame]
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
