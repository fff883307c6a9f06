"""Modules that misbehave only inside a worker process, for the fault tests."""

from __future__ import annotations

import multiprocessing
import os
import sys

from torch import nn


def _in_worker() -> bool:
    """In a local backend's worker process, or in a Ray actor."""
    if multiprocessing.parent_process() is not None:
        return True
    ray = sys.modules.get("ray")
    return bool(ray and ray.is_initialized() and ray.get_runtime_context().get_actor_id())


class DiesInWorker(nn.Module):
    """Kills its process when run in a worker on a frame (not on the zeros a worker
    rehearses on before the first)."""

    def forward(self, x):
        if _in_worker() and bool(x.any()):
            os._exit(3)
        return x


class DiesInRehearsal(nn.Module):
    """Kills its process when a worker rehearses it on zeros."""

    def forward(self, x):
        if _in_worker() and not bool(x.any()):
            os._exit(3)
        return x


class RaisesInWorker(nn.Module):
    """Raises when run in a worker."""

    def forward(self, x):
        if _in_worker():
            raise ValueError("this layer refuses to run here")
        return x


class HoldsTheInterpreter(nn.Module):
    """Computes for a while in a worker in one C call that never releases the interpreter
    (``sum`` over a range), so the worker's heartbeat thread is starved as by a long
    kernel on a loaded machine; a busy worker, not a dead one."""

    def __init__(self, numbers: int) -> None:
        super().__init__()
        self.numbers = numbers

    def forward(self, x):
        if _in_worker() and bool(x.any()):
            sum(range(self.numbers))
        return x


def model(middle: type[nn.Module]) -> nn.Sequential:
    """conv, the misbehaving module, conv."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), middle(), nn.Conv2d(4, 2, 3)).eval()
