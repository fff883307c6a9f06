"""Running plans: ``run`` and its backends (the inline oracle so far)."""

from __future__ import annotations

from typing import Any

from edgeweave.errors import UnknownNameError
from edgeweave.runtime.inline import Inputs, run_inline
from edgeweave.units import Plan

BACKENDS = {"inline": run_inline}


def run(plan: Plan, inputs: Inputs, backend: str = "inline") -> Any:
    """Execute ``plan`` on ``inputs`` with a backend; returns the model's outputs (a dict by
    model name when the plan runs several models)."""
    if backend not in BACKENDS:
        raise UnknownNameError(f"Unknown backend '{backend}'. Available backends: "
                               f"{', '.join(BACKENDS)}.")
    return BACKENDS[backend](plan, inputs)


__all__ = ["BACKENDS", "run", "run_inline"]
