"""Reproductions of the seed papers' experiments, one module per paper.

Each module's ``reproduce(progress)`` builds the paper's setting from the zoo and the
presets, plans and simulates it with the registered planners, checks the plans against
the model's own output, and returns a result with ``table()`` (for a terminal),
``to_dict()`` (JSON) and ``write(path)``: the page for ``docs/reproductions/`` and any
figure beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeweave.errors import UnknownNameError
from edgeweave.experiments import deepthings, edgeflow, jin2022, wang2021

# name: (reproduce, one line about it)
EXPERIMENTS: dict[str, tuple[Callable[..., Any], str]] = {
    "wang2021": (wang2021.reproduce, "seed 001: LO / RO / Extended Johnson on Pi 4B + server"),
    "edgeflow": (edgeflow.reproduce, "seed 002: EdgeFlow against layer-by-layer baselines on "
                 "2-8 mixed devices"),
    "deepthings": (deepthings.reproduce, "seed 003: fused tiles of YOLOv2's first 16 layers on "
                   "1-6 Raspberry Pi 3, stealing, sharing and MoDNN, simulated and run"),
    "jin2022": (jin2022.reproduce, "seed 000: LO / PO / MO for 3-9 models on 3 or 6 helpers "
                "and an edge server"),
}


def get(name: str) -> Callable[..., Any]:
    """The ``reproduce`` function of a registered experiment."""
    if name not in EXPERIMENTS:
        raise UnknownNameError(f"Unknown experiment '{name}'. Known experiments: "
                               f"{', '.join(EXPERIMENTS)}.")
    return EXPERIMENTS[name][0]
