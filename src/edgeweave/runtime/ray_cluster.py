"""Joining Ray: importing it with token authentication, the resource that pins a device's
actor to its node, starting or joining an instance, the command a worker machine runs to
join (``edgeweave worker``), and the actors' clocks moved onto the driver's."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any
from pathlib import Path

from edgeweave.errors import ClusterConfigError, EdgeweaveError, WorkerError
from edgeweave.units import Event


def import_ray():
    """Ray, with token authentication on unless the environment says otherwise, as
    ``edgeweave worker`` starts the nodes. Ray reads the mode when it is imported: where the
    caller imported it first (and has not joined a cluster), its configuration is read
    again, so that the driver speaks as the instance it starts."""
    imported_first = "ray" in sys.modules and "RAY_AUTH_MODE" not in os.environ
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise EdgeweaveError("The ray backend needs Ray, which is not installed: pip install "
                             "'edgeweave[ray]' -c constraints.txt.") from None
    if imported_first and not ray.is_initialized():
        from ray._raylet import Config  # what Ray's own tests use to switch the mode

        Config.initialize("")
    return ray


def resource(device: str) -> str:
    """The Ray custom resource that marks the node where ``device`` runs."""
    return f"edgeweave-device-{device}"


def worker_command(device: str, address: str, token_file: str | None = None,
                   cpus: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``ray start`` command line (and environment) that joins this machine to the Ray
    cluster at ``address`` as ``device``, with token authentication on; the token comes
    from ``token_file``, else from ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``."""
    _check_reachable(address)
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", f"--address={address}",
               f"--resources={json.dumps({resource(device): 1})}", "--block"]
    if cpus is not None:
        command.append(f"--num-cpus={cpus}")
    environment = {**os.environ, "RAY_AUTH_MODE": "token"}
    if token_file is not None:
        if not Path(token_file).is_file():
            raise ClusterConfigError(f"No token file '{token_file}': copy the head's "
                                     "~/.ray/auth_token (`ray get-auth-token` prints it).")
        environment["RAY_AUTH_TOKEN_PATH"] = str(token_file)
    return command, environment


def first_line(error: BaseException) -> str:
    """The first line of an error's message (Ray's run to many), else its type's name."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def connect(ray, devices: Sequence[str], address: str | None) -> bool:
    """Make sure Ray runs and offers every one of ``devices``; True when started here. With
    no ``address``, a local instance offering them all is started; a Ray this process
    already joined is used as it is."""
    if address is not None:
        _check_reachable(address)
    started = not ray.is_initialized()
    if started and address is None:
        try:
            ray.init(address="local", resources={resource(d): 1.0 for d in devices},
                     include_dashboard=False, log_to_driver=False, logging_level="error")
        except Exception as error:  # noqa: BLE001 - Ray raises a bare Exception on a timeout
            if ray.is_initialized():
                ray.shutdown()
            raise WorkerError(
                f"Could not start a local Ray instance: {first_line(error)}. On a busy "
                "machine Ray can take longer than its start-up allows: start Ray first "
                "(`ray start --head`) and pass its address (address='HOST:PORT', or "
                "--address on the command line), or try again.") from None
    elif started:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="error")
        except (ConnectionError, RuntimeError, ray.exceptions.AuthenticationError) as error:
            raise ClusterConfigError(
                f"Could not join the Ray cluster at '{address}': {first_line(error)} — is "
                "the head's token here (~/.ray/auth_token or RAY_AUTH_TOKEN)?") from None
    offered = ray.cluster_resources()
    missing = [d for d in devices if resource(d) not in offered]
    if missing:
        if started:
            ray.shutdown()
        raise ClusterConfigError(
            f"No Ray node offers device(s) {', '.join(missing)}: start one on each with "
            f"`edgeweave worker --device NAME --address HEAD:PORT`.")
    return started


def _check_reachable(address: str, timeout_s: float = 3.0) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as error:
        raise ClusterConfigError(f"The Ray head at '{address}' does not answer ({error}); "
                                 "start it with `ray start --head` on the gateway.") from None


SHARED_MEMORY = Path("/dev/shm")


def semaphores() -> set[str]:
    """The named semaphores of Ray's compiled-graph channels now in /dev/shm."""
    try:
        return {n for n in os.listdir(SHARED_MEMORY) if n.startswith(("sem.obj", "sem.hdr"))}
    except OSError:
        return set()


def remove_semaphores_left(before: set[str]) -> None:
    """Remove the channel semaphores that appeared since ``before`` and whose process (a
    raylet) has ended: Ray leaves them behind when the instance a run started stops."""
    for name in semaphores() - before:
        pid = name[len("sem.obj"):].split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            (SHARED_MEMORY / name).unlink(missing_ok=True)


def offsets_of(ray, actors: dict[str, Any], timeout_s: float) -> dict[str, float]:
    """Each actor's clock minus the driver's, from the fastest of a few round trips (the
    first also waits for the actor to start: one that does not within ``timeout_s`` is
    named)."""
    offsets = {}
    for device, actor in actors.items():
        trips = []
        for _ in range(5):
            before = time.time()
            try:
                theirs = ray.get(actor.clock.remote(), timeout=timeout_s)
            except ray.exceptions.GetTimeoutError:
                raise WorkerError(f"The actor of device '{device}' did not start within "
                                  f"{timeout_s:g} s (the run's timeout_s).") from None
            after = time.time()
            trips.append((after - before, theirs - (before + after) / 2))
        offsets[device] = min(trips)[1]
    return offsets


def on_driver_clock(event: Event, offsets: dict[str, float], start: float) -> Event:
    """An actor's event on the driver's clock, from ``start``: a transfer starts on the
    sender's clock and ends on the receiver's."""
    if event.kind == "compute":
        sender = receiver = event.resource
    else:
        sender, receiver = event.resource.split("->")
    return dataclasses.replace(event, start_s=event.start_s - offsets[sender] - start,
                               end_s=event.end_s - offsets[receiver] - start)
