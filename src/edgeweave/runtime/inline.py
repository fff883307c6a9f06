"""The inline backend: every device's worker in this process, segments in a dependency order.

It runs the same worker core as the distributed backends — compiled segments, region
kernels, parcels that carry exactly the regions the needs name (copied, as a transfer
would copy them) — so comparing its outputs with the original model checks the plan, the
region arithmetic, the kernels and the segments at once. It is the correctness oracle of
every test that makes a plan. Stealable tasks (``Plan.pool``) go round their takers, frame
by frame, each handed over by its home as a stolen one would be, so that every taker's
way of running them is checked too; a task that may run unshrunk (``Plan.fallback``) does
so every other round.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from edgeweave.runtime.backend import Frames, InlineOptions, Record, collect_outputs
from edgeweave.runtime.worker import DeviceWorker, Report, frame_outputs, replace_tensors
from edgeweave.units import Plan
from edgeweave.units.segments import segments
from edgeweave.units.stealing import tasks, unshrunk


def execute(plan: Plan, frames: Frames, interval_s: float | None = None,
            timeout_s: float = 60.0, options: InlineOptions = InlineOptions(),
            record: Record | None = None, in_flight: int | None = None
            ) -> Iterator[dict[str, Any]]:
    """Execute ``frames`` through ``plan`` in this process, frame after frame, yielding
    each one's outputs by model; nothing is measured (``record`` stays empty)."""
    workers = {device: DeviceWorker(device, plan) for device in plan.cluster.names}
    order = segments(plan)
    turn = {uid: i for i, uid in enumerate(plan.pool)}
    every = tasks(plan)
    stacks = {first: unshrunk(plan, every[first]) for first in plan.fallback}
    frame = 0
    while frames.has(frame):
        inputs = frames[frame]
        for unit in plan.units:
            if plan.is_input(unit.id):
                workers[unit.device].receive_inputs(frame, unit.graph, inputs[unit.graph])
        reports: list[Report] = []
        for segment in order:
            runner, unit_id, whole = segment.device, segment.units[0], None
            if unit_id in plan.pool:
                takers = plan.pool[unit_id]
                runner = takers[(frame + turn[unit_id]) % len(takers)]
                if unit_id in stacks and (frame // len(takers)) % 2:
                    whole = stacks[unit_id]  # every other round of takers, unshrunk
                if runner != segment.device:
                    parcel = workers[segment.device].handover(frame, segment, runner, whole)
                    workers[runner].receive(replace_tensors(parcel, torch.clone))
            parcels, report = (workers[runner].run(frame, segment) if whole is None
                               else workers[runner].run_unshrunk(frame, whole, segment))
            reports.append(report)
            for device, parcel in parcels:
                workers[device].receive(replace_tensors(parcel, torch.clone))
        for worker in workers.values():
            worker.finish(frame)
        frames.release(frame + 1)
        yield collect_outputs(plan, frame_outputs(plan, reports))
        frame += 1
