"""Measured per-layer times: the profiler and the profile file it writes.

``measure(graph)`` runs every layer alone on this host, on the real inputs it sees in the
model (computed once beforehand), with warm-up runs first; it keeps the median of the
timed repeats. A profile file holds the times of several models, keyed by graph name, with
the host it was measured on.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgeweave.errors import EdgeweaveError
from edgeweave.graph import LayerGraph, OpKind


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Median seconds of each layer of one model, and where they were measured."""

    model: str
    fingerprint: str  # the graph's fingerprint: times apply to that graph only
    layer_s: Mapping[str, float]
    host: str
    threads: int
    repeats: int
    # per layer a planner may split: the intercept of its time as a line in the share
    # computed, through the whole layer's time and a band's (``calibrate`` fits it from
    # bands run side by side, which may cost more than the whole layer run alone); a
    # layer not in it scales linearly
    fixed_s: Mapping[str, float] = dataclasses.field(default_factory=dict)


def measure(graph: LayerGraph, inputs: tuple[torch.Tensor, ...], repeats: int = 5,
            warmup: int = 2, threads: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> ModelProfile:
    """Time every layer of ``graph`` on this host; ``progress(done, total)`` is told as it goes."""
    if repeats < 1 or warmup < 0:
        raise EdgeweaveError(f"repeats must be >= 1 and warmup >= 0; got {repeats}, {warmup}.")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        inputs = graph.bind_inputs(inputs)
        values = {**dict(zip(graph.inputs, inputs)), **graph.run_all(*inputs)}
        layer_s: dict[str, float] = {}
        layers = list(graph)
        for done, layer in enumerate(layers, 1):
            if layer.kind is OpKind.INPUT:
                layer_s[layer.name] = 0.0
            else:
                feeds = {name: values[name] for name in layer.inputs}
                for _ in range(warmup):
                    graph.execute(feeds, [layer.name])
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    graph.execute(feeds, [layer.name])
                    times.append(time.perf_counter() - start)
                layer_s[layer.name] = statistics.median(times)
            if progress is not None:
                progress(done, len(layers))
        return ModelProfile(graph.name, graph.fingerprint, layer_s, _host(),
                            torch.get_num_threads(), repeats)
    finally:
        torch.set_num_threads(previous)


def save(profiles: list[ModelProfile], path: str | Path) -> None:
    """Write profiles to a JSON file, merged with the models already in it."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {"models": {}}
    for profile in profiles:
        data["models"][profile.model] = {
            "fingerprint": profile.fingerprint, "layer_s": dict(profile.layer_s),
            "host": profile.host, "threads": profile.threads, "repeats": profile.repeats,
            "fixed_s": dict(profile.fixed_s)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def load(path: str | Path) -> dict[str, ModelProfile]:
    """The profiles in a file, by graph fingerprint."""
    path = Path(path)
    try:
        data: Any = json.loads(path.read_text())
        return {entry["fingerprint"]: ModelProfile(name, entry["fingerprint"], entry["layer_s"],
                                                   entry["host"], entry["threads"],
                                                   entry["repeats"], entry.get("fixed_s", {}))
                for name, entry in data["models"].items()}
    except FileNotFoundError:
        raise EdgeweaveError(f"No profile file '{path}'.") from None
    except (ValueError, KeyError, TypeError) as error:
        raise EdgeweaveError(f"Profile file '{path}' is malformed ({error!r}); write it with "
                             "`edgeweave profile`.") from None


def _host() -> str:
    return f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip()
