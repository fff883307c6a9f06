"""The ray backend on a local Ray instance (started once for the session, with
address="local" so a stale cluster is never joined): actors pinned to their devices give
the model's outputs in both modes, and failures are named."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import edgeweave as ew
from edgeweave.errors import ClusterConfigError
from edgeweave.planners import PLANNERS
from edgeweave.errors import WorkerError
from edgeweave.runtime.ray_cluster import semaphores, worker_command
from tests.conftest import zoo_graph, zoo_model, zoo_output
from tests.runtime import faulty
from tests.runtime.test_pipes import tensors
from tests.runtime.test_local import (KINDS, THREE, _faulty_plan, _spread_plan,
                                      check_input_free_run, input_free_plan, ran)

FOUR = "rpi4b*3+edge-server@wifi"
MODES = ("compiled", "plain", "messages")  # "auto" is one of them
pytestmark = pytest.mark.usefixtures("ray_instance")


def _actor(ray, device: str):
    """The running actor of ``device``."""
    return ray.get_actor(next(n for n in ray.util.list_named_actors()
                              if n.startswith(f"edgeweave-{device}-")))


def _stop(ray, actor) -> None:
    """Freeze an actor's process (SIGSTOP), its id asked on the thread that answers pings."""
    os.kill(ray.get(actor.__ray_call__.options(concurrency_group="ping")
                    .remote(lambda self: os.getpid())), signal.SIGSTOP)


def _distinct_frames(count: int) -> list[torch.Tensor]:
    """Distinct two_branch inputs: a lost or swapped frame shows."""
    return [torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(i))
            for i in range(count)]


def _assert_each_frame_equals_the_model(result, frames) -> None:
    module = zoo_model("two_branch")[0]
    for output, frame in zip(result.outputs, frames, strict=True):
        torch.testing.assert_close(output, module(frame), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["compiled", "messages"])  # plain: the kill tests run it
def test_four_actors_three_frames_equal_the_model(mode):
    plan = _spread_plan("resnet18", FOUR)
    result = ew.run(plan, zoo_model("resnet18")[1], backend="ray", frames=3, mode=mode)
    assert len(result.outputs) == 3
    for output in result.outputs:
        torch.testing.assert_close(output, zoo_output("resnet18")[0], rtol=1e-4, atol=1e-4)
    timeline = result.timeline
    assert timeline.source == f"measured: ray backend ({mode}), 4 actors"
    assert set(timeline.busy_s()) == set(plan.cluster.names)
    moved = timeline.bytes_moved()
    assert {"rpi4b-0->rpi4b-1", "rpi4b-1->rpi4b-2", "rpi4b-2->edge-server"} <= set(moved)
    assert ran(plan, timeline, 2) == sorted(unit.id for unit in plan.units)
    assert all(latency > 0 for latency in timeline.latency_s)


# compiled: its own feed; messages draws through the coordinator, as the local backend
@pytest.mark.parametrize("mode", ["compiled"])
def test_a_stream_draws_its_frames_as_it_goes_and_gives_each_its_outputs(mode):
    frames, drawn = _distinct_frames(10), []

    def camera():
        for frame in frames:
            drawn.append(frame)
            yield frame

    module = zoo_model("two_branch")[0]
    with ew.run_stream(_spread_plan("two_branch", THREE), camera(), backend="ray", mode=mode,
                       in_flight=2) as outputs:
        for taken, output in enumerate(outputs, start=1):
            torch.testing.assert_close(output, module(frames[taken - 1]), rtol=1e-4,
                                       atol=1e-5)
            assert len(drawn) <= taken + 2 + 1  # compiled: two executions in flight
    assert taken == 10 and len(outputs.timeline.latency_s) == 10


def test_frames_held_back_by_the_driver_arrive_at_their_time_as_in_the_simulator():
    # more frames than the actors hold at once, all due at once: the later ones wait at
    # their camera, and their latency counts that wait, as the simulator's does
    plan = _spread_plan("line", THREE)
    result = ew.run(plan, zoo_model("line")[1], backend="ray", frames=6, mode="plain")
    arrival, done = result.timeline.arrival_s, result.timeline.done_s
    assert len(set(arrival)) == 1
    assert all(a <= b for a, b in zip(done, done[1:]))
    assert list(result.timeline.latency_s) == sorted(result.timeline.latency_s)


@pytest.mark.parametrize("planner", KINDS)
def test_every_kind_of_plan_runs_on_the_ray_backend(planner):
    assert planner in PLANNERS
    plan = ew.plan([zoo_graph("line"), zoo_graph("two_branch")], "rpi3*2+jetson-tx2@4g",
                   planner=planner)
    inputs = {"line": zoo_model("line")[1], "two_branch": zoo_model("two_branch")[1]}
    result = ew.run(plan, inputs, backend="ray", frames=2)
    for output in result.outputs:
        torch.testing.assert_close(output["line"], zoo_output("line")[0])
        torch.testing.assert_close(output["two_branch"], zoo_output("two_branch")[0])


@pytest.mark.parametrize("mode", MODES[:1])  # plain: compiled's error path; messages: local's
def test_a_failing_actor_is_named_with_its_frame(mode):
    plan, x = _faulty_plan(faulty.RaisesInWorker)
    with pytest.raises(WorkerError, match="Device 'edge-server' failed on frame 0 .*refuses "
                                          "to run here"):
        ew.run(plan, x, backend="ray", mode=mode)
    # the actors of the failed run are gone: the next run gets fresh ones
    result = ew.run(_spread_plan("line", THREE), zoo_model("line")[1], backend="ray")
    torch.testing.assert_close(result.output, zoo_output("line")[0])


@pytest.mark.parametrize("mode", ["compiled", "messages"])
def test_actors_slower_to_start_than_the_timeout_are_named_in_one_line(mode):
    plan = _spread_plan("line", THREE)
    with pytest.raises(WorkerError, match="did not start within 0.001 s") as caught:
        ew.run(plan, zoo_model("line")[1], backend="ray", mode=mode, timeout_s=0.001)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("mode", MODES)
def test_an_actor_killed_mid_run_loses_no_frame(mode, ray_instance):
    plan = _spread_plan("two_branch", THREE)

    def kill_rpi4b_1(frame):
        if frame == 0:
            ray_instance.kill(_actor(ray_instance, "rpi4b-1"))

    # frame 0 is collected (and the actor killed) before frame 4 is sent in either mode
    # (at most four frames in flight), so frames 4 and 5 meet the dead actor for sure
    frames = _distinct_frames(6)
    result = ew.run(plan, stream=frames, backend="ray", mode=mode, interval_s=0.3,
                    on_frame=kill_rpi4b_1)
    assert len(result.outputs) == 6
    _assert_each_frame_equals_the_model(result, frames)
    assert len(result.faults) == 1 and "device 'rpi4b-1' died" in result.faults[0]
    assert sorted({e.frame for e in result.timeline.events}) == list(range(6))
    # every frame's units ran, and after the loss none on the lost device
    ids = [unit.id for unit in plan.units]  # a spread plan's devices hold runs of them

    def units(label: str) -> list[str]:  # a compute event's unit, or first..last
        first, _, last = label.partition("..")
        return ids[ids.index(first):ids.index(last or first) + 1]

    computed = [(e.frame, u) for e in result.timeline.events if e.kind == "compute"
                for u in units(e.unit)]
    assert {u for frame, u in computed if frame == 5} == set(ids)
    assert not any(e.resource == "rpi4b-1" for e in result.timeline.events
                   if e.kind == "compute" and e.frame == 5)
    # what the survivors had computed is reused, not computed again (the lost device's
    # units may have run there before it died, and again on their adopter)
    moved = set(plan.order["rpi4b-1"])
    assert max(Counter(c for c in computed if c[1] not in moved).values()) == 1


def test_two_actors_lost_at_once_lose_no_frame(ray_instance):
    # compiled (plain recovers the same way; messages as the local backend): rpi4b-0 frozen
    # and rpi4b-1 killed at once — a frozen actor must be killed before the compiled graph
    # is torn down, which waits on every actor's loop
    plan = _spread_plan("two_branch", FOUR)

    def lose_two(frame):
        if frame == 0:
            _stop(ray_instance, _actor(ray_instance, "rpi4b-0"))
            ray_instance.kill(_actor(ray_instance, "rpi4b-1"))

    frames = _distinct_frames(6)
    result = ew.run(plan, stream=frames, backend="ray", mode="compiled", interval_s=0.3,
                    on_frame=lose_two, detect_s=1.0)
    _assert_each_frame_equals_the_model(result, frames)
    lost = " ".join(result.faults)
    assert "'rpi4b-0'" in lost and "'rpi4b-1'" in lost


def test_a_frozen_actor_is_found_within_the_detection_time_and_replaced(ray_instance):
    # plain (compiled: the test above freezes one too)
    plan = _spread_plan("two_branch", THREE)

    def freeze_rpi4b_1(frame):
        if frame == 0:
            _stop(ray_instance, _actor(ray_instance, "rpi4b-1"))

    frames = _distinct_frames(6)
    # the run would stop after timeout_s (60 s) without the pings
    result = ew.run(plan, stream=frames, backend="ray", mode="plain", interval_s=0.2,
                    on_frame=freeze_rpi4b_1, detect_s=1.0)
    _assert_each_frame_equals_the_model(result, frames)
    assert len(result.faults) == 1 and "'rpi4b-1'" in result.faults[0]


def test_a_device_no_node_offers_is_a_config_error():
    plan = ew.plan(zoo_graph("line"), "jetson-nano+edge-server@wifi", planner="neurosurgeon")
    with pytest.raises(ClusterConfigError, match="No Ray node offers device\\(s\\) jetson-nano:"
                                                 " start one on each with `edgeweave worker"):
        ew.run(plan, zoo_model("line")[1], backend="ray")


def test_emulation_is_refused_on_ray():
    plan = ew.plan(zoo_graph("line"), "rpi4b")
    with pytest.raises(ew.EdgeweaveError, match="Backend 'ray' has no option 'emulate_links'"):
        ew.run(plan, zoo_model("line")[1], backend="ray", emulate_links=True)


def test_the_worker_command_joins_as_the_device_with_token_auth(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text("secret")
    with socket.create_server(("127.0.0.1", 0)) as head:  # a head that answers
        address = f"127.0.0.1:{head.getsockname()[1]}"
        command, environment = worker_command("rpi4b-0", address, str(token), cpus=2)
        assert command[1:5] == ["-m", "ray.scripts.scripts", "start", f"--address={address}"]
        assert '--resources={"edgeweave-device-rpi4b-0": 1}' in command
        assert "--block" in command and "--num-cpus=2" in command
        assert environment["RAY_AUTH_MODE"] == "token"
        assert environment["RAY_AUTH_TOKEN_PATH"] == str(token)
        with pytest.raises(ClusterConfigError, match="No token file"):
            worker_command("rpi4b-0", address, str(tmp_path / "missing"))


@pytest.mark.parametrize("mode", MODES)
def test_a_device_whose_units_read_nothing_waits_for_each_frame(mode, ray_instance):
    plan, module, x, device = input_free_plan()
    result = ew.run(plan, x, backend="ray", mode=mode, frames=3, interval_s=0.3, timeout_s=20)
    check_input_free_run(result, module, x, device, 3)


def _driver(tmp_path, body: str, env: dict[str, str]) -> list[str]:
    """The lines a separate driver script prints, running ``body`` on the line model."""
    script = tmp_path / "driver.py"
    script.write_text(
        "import ray\n"  # imported before edgeweave, as a Ray user's script may
        "import edgeweave as ew\n"
        "if __name__ == '__main__':\n"
        "    module, x = ew.models.get('line')\n"
        "    plan = ew.plan(ew.trace(module, x), 'rpi4b*2@wifi', planner='equal-split')\n"
        "    try:\n"
        f"        {body}\n"
        "    except ew.EdgeweaveError as error:\n"
        "        print(error)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    return (done.stdout + done.stderr).strip().splitlines()


def test_a_driver_that_imported_ray_first_runs_with_token_auth(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    before = semaphores()
    lines = _driver(tmp_path, "print(tuple(ew.run(plan, x, backend='ray').output.shape))", env)
    assert lines == ["(1, 10)"]
    # a compiled graph's channels leave no semaphore once the run's own instance stops
    # (another Ray on this machine may hold some meanwhile: those of live processes)
    left = {n for n in semaphores() - before
            if not os.path.exists(f"/proc/{n[len('sem.obj'):].split('-')[0]}")}
    assert left == set()


def test_a_driver_without_the_token_is_one_line(tmp_path, ray_instance):
    address = ray_instance.get_runtime_context().gcs_address
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
           "HOME": str(tmp_path)}  # no ~/.ray/auth_token there
    lines = _driver(tmp_path, f"ew.run(plan, x, backend='ray', address={address!r})", env)
    assert len(lines) == 1 and f"Could not join the Ray cluster at '{address}'" in lines[0], lines


@settings(max_examples=25, deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=6))
def test_any_region_of_any_layout_travels_through_ray(ray_instance, sent):
    """What the ray transports carry goes through Ray's serialiser: any strides, sizes of 1
    and 0, every dtype, as the local pipes' own property test checks for them."""
    received = ray_instance.get(ray_instance.put(("parcel", sent)))[1]
    for ours, theirs in zip(received, sent, strict=True):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert torch.equal(ours, theirs)


def test_a_local_ray_that_fails_to_start_is_one_line(ray_instance, monkeypatch):
    """Ray raises a bare ``Exception`` when its local instance times out starting (seen 11
    times in 14 on a loaded 2-core machine): one line, with what to do."""
    def timed_out(*args, **kwargs):
        raise Exception("The current node timed out during startup. This could happen "
                        "because some of the raylet failed to startup.\nmore lines")
    monkeypatch.setattr(ray_instance, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_instance, "init", timed_out)
    made = ew.plan(zoo_graph("line"), "rpi4b+edge-server@wifi", planner="remote")
    with pytest.raises(WorkerError, match=r"^Could not start a local Ray instance: The "
                       r"current node timed out during startup\..*ray start --head.*"
                       r"address='HOST:PORT'") as caught:
        ew.run(made, zoo_model("line")[1], backend="ray")
    assert "\n" not in str(caught.value)
