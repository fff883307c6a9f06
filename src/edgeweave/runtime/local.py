"""The local backend: one OS process per device on this machine, each a ``DeviceWorker``.

Each worker holds the plan as its device sees it (``Plan.for_device``: only its own
layers' weights) and runs its segments in the plan's order, frame after frame, with its
own torch thread budget (the device's ``threads``, default 1). Tensors go device to device,
never through the coordinator, over **one pipe per ordered pair of processes**, each with
its own shared-memory ring for tensors (``runtime.pipes``): a process killed in the middle
of a send can only spoil its own pipes, which its peers then drop, so no other channel can
wedge. A reader thread per incoming pipe drains it into the worker's inbox, so a send
never waits on a busy receiver. Liveness is a heartbeat each worker writes
into shared memory. Workers stamp events with the machine's monotonic clock, shared by all
processes here; events travel with the segment reports, not one message per unit.

The coordinator (``runtime.coordinator``) feeds each frame's inputs to its models' source
devices (``Plan.sources``), collects the model outputs and re-plans around a worker whose
process dies, or whose heartbeat and CPU time both stop for ``detect_s`` (longer when its
units take longer: ``coordinator.patience_s``). Each worker is a loop around its
device's ``DeviceWorker`` (``runtime.local_worker``), which also steals stealable units
(``Plan.pool``) from their homes as ``units.stealing`` says.
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp

from edgeweave.errors import WorkerError
from edgeweave.runtime.backend import Frames, LocalOptions, Record
from edgeweave.runtime.coordinator import Coordinator, patience_s
from edgeweave.runtime.emulation import Emulation
from edgeweave.runtime.local_worker import COORDINATOR, serve
from edgeweave.runtime.pipes import Sender, read_into
from edgeweave.units import Plan


def execute(plan: Plan, frames: Frames, interval_s: float | None = None,
            timeout_s: float = 60.0, options: LocalOptions = LocalOptions(),
            record: Record | None = None, in_flight: int | None = None
            ) -> Iterator[dict[str, Any]]:
    """Run ``frames`` through ``plan`` in worker processes, yielding each frame's outputs
    by model in order; what was measured goes to ``record``."""
    if getattr(mp.current_process(), "_inheriting", False):
        # a worker being started re-runs a script that has no `__main__` guard: it leaves
        # quietly, and the run that started it names the cause (``_Processes.hint``)
        raise SystemExit(1)
    context = worker_context()
    names = [COORDINATOR, *plan.order]
    pipes = {(a, b): context.Pipe(duplex=False) for a in names for b in names if a != b}
    beats = context.Array("d", len(plan.order), lock=False)
    media = {link.channel: (context.Value("d", 0.0), context.Lock())
             for link in plan.cluster.links} if options.emulate_links else {}
    emulation = Emulation(media, options.emulate_compute)
    workers = {}
    for index, device in enumerate(plan.order):
        inbound = {a: pipes[a, device][0] for a in names if a != device}
        outbound = {b: pipes[device, b][1] for b in names if b != device}
        workers[device] = context.Process(
            target=serve, name=f"edgeweave-{device}", daemon=True,
            # the plan goes by value: the fork server passes a process the file descriptors
            # of what it shares all at once, 256 at most (a tensor in shared memory is one)
            args=(device, pickle.dumps(plan.for_device(device), pickle.HIGHEST_PROTOCOL),
                  inbound, outbound, emulation, beats, index))
    inbox: queue.Queue = queue.Queue()
    readers: list[threading.Thread] = []
    try:
        with _ignoring_interrupts():
            for device, process in workers.items():
                try:
                    process.start()
                except BrokenPipeError:  # it died reading what it was given
                    raise WorkerError(f"The worker of device '{device}' died as it started."
                                      + _Processes.hint) from None
        for (a, b), (reader, writer) in pipes.items():  # keep only the coordinator's ends
            if b != COORDINATOR:
                reader.close()
            if a != COORDINATOR:
                writer.close()
        readers = [read_into(pipes[device, COORDINATOR][0], device, inbox)
                   for device in plan.order]
        senders = {device: Sender(pipes[COORDINATOR, device][1]) for device in plan.order}
        record = record if record is not None else Record()
        coordinator = Coordinator(plan, _Processes(workers, beats, options.detect_s),
                                  lambda device, message: senders[device].post(message),
                                  inbox, timeout_s, record)
        coordinator.wait_ready()
        record.source = (f"measured: local backend, {len(workers)} processes"
                         f"{emulation.label()}")
        yield from coordinator.run(frames, interval_s, in_flight)
    finally:
        for device in plan.order:
            try:
                pipes[COORDINATOR, device][1].send(("stop",))
            except (OSError, ValueError):
                pass  # that worker is gone
        started = [p for p in workers.values() if p.pid is not None]
        deadline = time.monotonic() + STOP_S
        for process in started:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        for process in started:
            if process.is_alive():
                process.kill()
                process.join()
        for thread in readers:  # at EOF now; one inside torch must not meet the shutdown
            thread.join(timeout=STOP_S)
        for reader, writer in pipes.values():
            reader.close()
            writer.close()


STOP_S = 1.0  # how long stopped workers may take to finish what they run, all together


def worker_context():
    """Where worker processes come from: forked by multiprocessing's fork server, which
    imported torch and the worker's code once for the caller's lifetime (a spawned process
    imports them anew: seconds a run on two cores, ``bench/worker_start.py``) and,
    unlike a plain fork, holds none of the caller's threads or state. As with spawn, each
    worker imports the caller's main script before it starts."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([serve.__module__])
    return context


@contextlib.contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    """Ctrl-C ignored while workers start, so that one Ctrl-C in a terminal reaches the run
    alone, which stops its workers: a fork server started here passes the ignored signal to
    every worker it forks, covering a worker while it imports the main script, before
    ``serve`` ignores the signal itself; from a thread other than the main one, signals
    cannot be set: nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Processes:
    """The worker processes as the coordinator sees them: dead when their process has
    exited; frozen when neither their heartbeat nor (where ``/proc`` tells) their CPU time
    has moved for ``detect_s`` — or three times their longest compute, if longer. A worker
    starved of CPU on a loaded machine still gains CPU time now and then, and a heartbeat
    thread can wait behind compute that holds the interpreter; a stopped one gains none."""

    hint = (" Worker processes import the main script: a script that runs the local "
            "backend needs `if __name__ == '__main__':`.")

    def __init__(self, processes: dict, beats, detect_s: float) -> None:
        self.processes, self.beats, self.detect_s = processes, beats, detect_s
        self.index = {device: i for i, device in enumerate(processes)}
        self.progress: dict[str, tuple[int | None, float]] = {}  # CPU ticks, when they moved

    def lost(self, devices, frozen: bool, busy_s=None) -> list[tuple[str, str]]:
        """Each of ``devices`` whose worker died or (``frozen``) stopped making progress."""
        now, found = time.monotonic(), []
        for device in devices:
            process = self.processes[device]
            if not process.is_alive():
                found.append((device, f"died (exit code {process.exitcode})"))
                continue
            if not frozen:
                continue
            window = patience_s(self.detect_s, (busy_s or {}).get(device, 0.0))
            if now - max(self.beats[self.index[device]], self._moved(device, now)) > window:
                process.kill()
                found.append((device, f"stopped answering for {window:.1f} s"))
        return found

    def _moved(self, device: str, now: float) -> float:
        """When the worker's CPU time last grew (as far as we have seen; 0 if unknown)."""
        ticks = cpu_ticks(self.processes[device].pid)
        seen, when = self.progress.get(device, (ticks, 0.0))
        if ticks is not None and ticks != seen:
            seen, when = ticks, now
        self.progress[device] = seen, when
        return when


def cpu_ticks(pid: int) -> int | None:
    """User and system CPU time of a running process, in clock ticks, from ``/proc``;
    None where there is none, or the process is stopped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("T", "t", "Z") else int(fields[11]) + int(fields[12])
