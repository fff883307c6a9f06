"""Soak: streams of distinct frames (``run_stream``) through split plans while workers are
killed or frozen at random moments; every output is checked against the model on its own
frame as it comes out (issue 15).

Each round plans one model spread over four devices (whole layers in runs, so tensors
cross devices at every boundary), streams its frames and, after a random frame, kills
(SIGKILL) or freezes (SIGSTOP) one random worker — in some rounds two. A round counts its
frames lost (frames whose outputs never came out), wrong (an output that is not the model's
on that frame, which also catches swapped frames) and whether the run stopped with an error
instead. Models: two_branch (32 px, small tensors) and resnet18 at 224 px (multi-MB
tensors through the local pipes' shared rings). On Ray, actors are killed (``ray.kill``)
or their processes stopped, in the compiled and the messages mode by turns.

Writes the "soak" section of docs/benchmarks.md.
Run: .venv/bin/python bench/soak.py [LOCAL_FRAMES [RAY_FRAMES]]   (default 1000 and 300)
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import random
import signal
import sys
import time
from dataclasses import dataclass

import torch

import edgeweave as ew
from edgeweave.graph import OpKind
from edgeweave.units import build_plan, whole
from sections import write_section

CLUSTER = "rpi4b*3+edge-server@wifi"
# (model, frames per round, seconds between frames)
MODELS = {"two_branch": (60, 0.02), "resnet18": (15, 0.1)}


@dataclass
class Round:
    """What one run did and how it ended."""

    backend: str
    model: str
    frames: int
    faults: str  # what was done to which device, at which frame
    recovered: int  # faults the run reported (naming the device) and went on past
    lost: int
    wrong: int
    error: str  # the run's one line, if it stopped
    seconds: float


def spread_plan(name: str) -> tuple[ew.Plan, torch.nn.Module]:
    """``name`` in consecutive runs of whole layers over the cluster's devices."""
    module, example = ew.models.get(name)
    graph, cluster = ew.trace(module, example, name=name), ew.Cluster.load(CLUSTER)
    layers = [layer for layer in graph if layer.kind is not OpKind.INPUT]
    parts = [whole(graph, layer.name, cluster.names[i * len(cluster.names) // len(layers)])
             for i, layer in enumerate(layers)]
    return build_plan({name: graph}, cluster, parts), module


def frames_of(name: str, count: int, seed: int) -> list[torch.Tensor]:
    """``count`` distinct seeded inputs of the model's example shape."""
    _, example = ew.models.get(name)
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(example.shape, generator=generator) for _ in range(count)]


def local_signaller(faults: list[tuple[int, str, int]]):
    """An on_frame callback sending each (frame, device, signal) once that frame is done."""
    def on_frame(frame: int) -> None:
        for at, device, sig in faults:
            if at == frame:
                worker = next((p for p in multiprocessing.active_children()
                               if p.name == f"edgeweave-{device}"), None)
                if worker is not None:
                    os.kill(worker.pid, sig)
    return on_frame


def ray_signaller(ray, faults: list[tuple[int, str, int]], mode: str):
    """Ray's: an actor killed (``ray.kill``), or its process stopped, once the frame is
    done (its process id asked on the thread that answers while the actor computes)."""
    group = "mail" if mode == "messages" else "ping"

    def on_frame(frame: int) -> None:
        for at, device, sig in faults:
            for name in ray.util.list_named_actors() if at == frame else ():
                if name.startswith(f"edgeweave-{device}-"):
                    actor = ray.get_actor(name)
                    if sig == signal.SIGKILL:
                        ray.kill(actor)
                    else:
                        os.kill(ray.get(actor.__ray_call__.options(concurrency_group=group)
                                        .remote(lambda self: os.getpid())), sig)
    return on_frame


def one_round(rng: random.Random, backend: str, mode: str | None, ray=None) -> Round:
    """Plan, stream, fault and check one round."""
    name = rng.choice(list(MODELS))
    count, interval_s = MODELS[name]
    plan, module = spread_plan(name)
    frames = frames_of(name, count, rng.randrange(1 << 30))
    devices = list(plan.order)
    kinds = [signal.SIGKILL, signal.SIGSTOP]
    victims = rng.sample(devices, 2 if rng.random() < 0.3 else 1)
    faults = [(rng.randrange(count // 2), device, rng.choice(kinds)) for device in victims]
    options = {"mode": mode} if backend == "ray" else {}
    on_frame = (ray_signaller(ray, faults, mode) if backend == "ray"
                else local_signaller(faults))
    start = time.perf_counter()
    error, out, wrong, recovered = "", 0, 0, 0
    try:  # a stream: each output checked as it comes out, then the fault it triggers
        with ew.run_stream(plan, iter(frames), backend=backend, interval_s=interval_s,
                           detect_s=1.0, timeout_s=60.0, **options) as outputs:
            for frame, output in enumerate(outputs):
                with torch.no_grad():
                    wrong += not torch.allclose(output, module(frames[frame]), rtol=1e-4,
                                                atol=1e-4)
                out += 1
                on_frame(frame)
        # a fault survived is one the run reported (named the device) and went on past
        recovered = sum(any(f"'{device}'" in line for line in outputs.faults)
                        for _, device, _ in faults)
    except ew.EdgeweaveError as stopped:
        error = str(stopped)
    seconds = time.perf_counter() - start
    what = ", ".join(f"{'kill' if sig == signal.SIGKILL else 'freeze'} {device} after "
                     f"frame {at}" for at, device, sig in faults)
    return Round(backend + (f" ({mode})" if mode else ""), name, count, what, recovered,
                 count - out, wrong, error, seconds)


def soak(backend: str, total: int, modes: tuple[str | None, ...], seed: int,
         ray=None) -> list[Round]:
    """Rounds until ``total`` frames have been streamed, cycling through ``modes``."""
    rng, rounds, streamed = random.Random(seed), [], 0
    while streamed < total:
        done = one_round(rng, backend, modes[len(rounds) % len(modes)], ray)
        rounds.append(done)
        streamed += done.frames
        print(f"{done.backend} {done.model}: {done.faults}; lost {done.lost}, wrong "
              f"{done.wrong}{'; ' + done.error if done.error else ''}", flush=True)
    return rounds


def table(rounds: list[Round]) -> str:
    """The summary per backend and the stopped rounds' lines."""
    lines = ["| backend | rounds | frames | faults done | faults survived | frames lost | "
             "frames wrong | runs stopped | wall time |", "|---|---|---|---|---|---|---|---|---|"]
    for backend in dict.fromkeys(r.backend for r in rounds):
        mine = [r for r in rounds if r.backend == backend]
        faults = sum(r.faults.count("after") for r in mine)
        lines.append(f"| {backend} | {len(mine)} | {sum(r.frames for r in mine)} | {faults} | "
                     f"{sum(r.recovered for r in mine)} | {sum(r.lost for r in mine)} | "
                     f"{sum(r.wrong for r in mine)} | {sum(bool(r.error) for r in mine)} | "
                     f"{sum(r.seconds for r in mine):.0f} s |")
    stopped = [r for r in rounds if r.error]
    if stopped:
        lines += ["", "Runs that stopped (the frames not out by then count as lost):", ""]
        lines += [f"- {r.backend}, {r.model}, {r.faults}: {r.error}" for r in stopped]
    return "\n".join(lines)


def main() -> None:
    local_frames = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    ray_frames = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    if local_frames:
        write_section("soak-local", table(soak("local", local_frames, (None,), seed=0)))
    if ray_frames:
        from edgeweave.runtime.ray_cluster import import_ray, resource

        ray = import_ray()
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level="error",
                 resources={resource(d): 1.0 for d in ew.Cluster.load(CLUSTER).names})
        try:
            write_section("soak-ray", table(soak("ray", ray_frames, ("compiled", "messages"),
                                                 seed=1, ray=ray)))
        finally:
            ray.shutdown()
    models = ", ".join(f"{m} ({n} frames a round, {1e3 * s:.0f} ms apart)"
                       for m, (n, s) in MODELS.items())
    header = (f"Measured on {platform.machine()} with {os.cpu_count()} cores, torch "
              f"{torch.__version__}: `{CLUSTER}`, each model spread over the four devices in "
              f"runs of whole layers; {models}; "
              "after a random frame of the round's first half, one random worker (in 30% of "
              "rounds two) is killed or frozen; `detect_s=1`. Every output is compared with "
              "the model on its own frame.")
    write_section("soak", header)


if __name__ == "__main__":
    main()
