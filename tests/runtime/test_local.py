"""The local backend: real worker processes give the model's outputs, a measured timeline,
and clear errors when a worker fails or dies, leaving no process behind."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import edgeweave as ew
from edgeweave.graph import OpKind
from edgeweave.planners import PLANNERS
from edgeweave.errors import WorkerError
from edgeweave.units import build_plan, whole
from edgeweave.units.segments import step_units
from tests.conftest import zoo_graph, zoo_model, zoo_output
from tests.runtime import faulty

THREE = "rpi4b*2+edge-server@wifi"


def test_three_workers_three_frames_equal_the_model():
    graph = zoo_graph("resnet18")
    cluster = ew.Cluster.load(THREE)
    parts = [whole(graph, layer.name, cluster.names[(i // 20) % 3])
             for i, layer in enumerate(graph) if layer.kind is not OpKind.INPUT]
    plan = build_plan({"resnet18": graph}, cluster, parts)
    result = ew.run(plan, zoo_model("resnet18")[1], backend="local", frames=3)
    assert len(result.outputs) == 3
    for output in result.outputs:
        torch.testing.assert_close(output, zoo_output("resnet18")[0], rtol=1e-4, atol=1e-4)
    timeline = result.timeline
    assert timeline.source.startswith("measured: local backend")
    assert set(timeline.busy_s()) == set(cluster.names)
    assert {"rpi4b-0->rpi4b-1", "rpi4b-1->edge-server"} <= set(timeline.bytes_moved())
    assert all(latency > 0 for latency in timeline.latency_s)
    assert ran(plan, timeline, 0) == sorted(unit.id for unit in plan.units)
    assert not multiprocessing.active_children()


# one planner per kind of plan — a device alone, a cut, bands, fused stacks, tiles, relays,
# pieces — each run starting its workers (seconds); every planner runs inline
# (tests/planners/test_conformance.py), on the same units and messages
KINDS = ("local", "neurosurgeon", "equal-split", "fused", "deepthings", "bodp", "mo")


@pytest.mark.parametrize("planner", KINDS)
def test_every_kind_of_plan_runs_on_the_local_backend(planner):
    assert planner in PLANNERS
    plan = ew.plan([zoo_graph("line"), zoo_graph("two_branch")], "rpi3*2+jetson-tx2@4g",
                   planner=planner)
    inputs = {"line": zoo_model("line")[1], "two_branch": zoo_model("two_branch")[1]}
    result = ew.run(plan, inputs, backend="local")
    torch.testing.assert_close(result.output["line"], zoo_output("line")[0])
    torch.testing.assert_close(result.output["two_branch"], zoo_output("two_branch")[0])


def ran(plan, timeline, frame):
    """The units whose computation the timeline shows for ``frame``, each once."""
    return sorted(u for e in timeline.events if e.kind == "compute" and e.frame == frame
                  for u in step_units(plan, e.resource, e.unit))


def _faulty_plan(middle):
    model = faulty.model(middle)
    x = torch.randn(1, 3, 8, 8)
    graph = ew.trace(model, x, leaf_modules=[middle], name="faulty")
    cluster = ew.Cluster.load("rpi4b+edge-server@ethernet")
    parts = [whole(graph, "_0", "rpi4b"), whole(graph, "_1", "edge-server"),
             whole(graph, "_2", "edge-server")]
    return build_plan({"faulty": graph}, cluster, parts), x


def test_a_failing_worker_is_named_with_its_frame():
    plan, x = _faulty_plan(faulty.RaisesInWorker)
    with pytest.raises(WorkerError, match="Device 'edge-server' failed on frame 0 .*"
                                          "refuses to run here"):
        ew.run(plan, x, backend="local", frames=2)
    assert not multiprocessing.active_children()


def test_a_worker_busy_for_longer_than_the_detection_time_is_not_declared_dead():
    started = time.perf_counter()
    sum(range(10**6))
    numbers = int(10**6 * 1.0 / (time.perf_counter() - started))  # about a second's work
    busy = faulty.HoldsTheInterpreter(numbers)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), busy,
                                torch.nn.Conv2d(4, 2, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    graph = ew.trace(model, x, leaf_modules=[faulty.HoldsTheInterpreter], name="busy")
    cluster = ew.Cluster.load("rpi4b+edge-server@ethernet")
    plan = build_plan({"busy": graph}, cluster, [
        whole(graph, "_0", "rpi4b"), whole(graph, "_1", "edge-server"),
        whole(graph, "_2", "edge-server")])
    # silent for about a second, three times the detection time, but gaining CPU time
    result = ew.run(plan, x, backend="local", frames=2, detect_s=0.3)
    assert not result.faults and len(result.outputs) == 2
    for output in result.outputs:
        torch.testing.assert_close(output, model(x))


def test_a_worker_that_dies_before_the_first_frame_is_named_with_its_exit_code():
    plan, x = _faulty_plan(faulty.DiesInRehearsal)
    with pytest.raises(WorkerError, match="worker of device 'edge-server' died \\(exit code 3\\) "
                                          "before the first frame"):
        ew.run(plan, x, backend="local", timeout_s=20)
    assert not multiprocessing.active_children()


def test_a_unit_that_kills_every_worker_stops_the_run_naming_device_and_frame():
    plan, x = _faulty_plan(faulty.DiesInWorker)
    # edge-server dies, rpi4b adopts its units and dies too: no survivor is left
    with pytest.raises(WorkerError, match="worker of device 'rpi4b' died \\(exit code 3\\) "
                                          "while computing frame 0, and the run cannot go on"):
        ew.run(plan, x, backend="local", frames=2, timeout_s=20)
    assert not multiprocessing.active_children()


def _spread_plan(name, cluster):
    graph, cluster = zoo_graph(name), ew.Cluster.load(cluster)
    layers = [layer for layer in graph if layer.kind is not OpKind.INPUT]
    parts = [whole(graph, layer.name, cluster.names[i * len(cluster.names) // len(layers)])
             for i, layer in enumerate(layers)]
    return build_plan({name: graph}, cluster, parts)


def _killer(device, sig=signal.SIGKILL):
    """An on_frame callback that signals ``device``'s worker once the first frame is done;
    frames arrive 0.4 s apart, so later frames are still to come."""
    def on_frame(frame):
        if frame == 0:
            worker = next(p for p in multiprocessing.active_children()
                          if p.name == f"edgeweave-{device}")
            os.kill(worker.pid, sig)
    return on_frame


@pytest.mark.parametrize("victim", ["rpi4b-1", "rpi4b-0"])  # a middle device; the input device
def test_a_worker_killed_mid_run_loses_no_frame(victim):
    plan = _spread_plan("two_branch", THREE)
    module = zoo_model("two_branch")[0]
    frames = [torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(i))
              for i in range(5)]  # distinct frames: a lost or swapped one shows
    result = ew.run(plan, stream=frames, backend="local", interval_s=0.4,
                    on_frame=_killer(victim))
    assert len(result.outputs) == 5
    for output, frame in zip(result.outputs, frames):
        torch.testing.assert_close(output, module(frame), rtol=1e-4, atol=1e-5)
    assert len(result.faults) == 1 and f"device '{victim}' died" in result.faults[0]
    assert not multiprocessing.active_children()


def test_a_worker_killed_while_large_tensors_cross_loses_no_frame():
    # resnet18 in thirds: what crosses devices travels through the pipes' shared rings
    plan = _spread_plan("resnet18", THREE)
    crossing = max(n.region.numel for u in plan.units for n in u.needs
                   if plan.unit(n.unit).device != u.device)
    assert crossing * 4 > 256 << 10
    result = ew.run(plan, zoo_model("resnet18")[1], backend="local", frames=4,
                    interval_s=0.1, on_frame=_killer("rpi4b-1"))
    assert len(result.outputs) == 4
    for output in result.outputs:
        torch.testing.assert_close(output, zoo_output("resnet18")[0], rtol=1e-4, atol=1e-4)
    assert "device 'rpi4b-1' died" in result.faults[0]


def test_a_silent_worker_is_detected_within_the_bound_and_replaced():
    plan = _spread_plan("line", THREE)
    result = ew.run(plan, zoo_model("line")[1], backend="local", frames=3, interval_s=0.4,
                    detect_s=2.0, on_frame=_killer("rpi4b-1", signal.SIGSTOP))
    for output in result.outputs:
        torch.testing.assert_close(output, zoo_output("line")[0])
    assert "'rpi4b-1' stopped answering for 2.0 s" in result.faults[0]
    assert not multiprocessing.active_children()


def test_workers_hold_only_the_weights_of_their_own_layers():
    plan = _spread_plan("resnet18", THREE)
    for device in plan.order:
        held = plan.for_device(device)
        mine = {layer for u in plan.units if u.device == device for layer in u.layers}
        graph = held.graphs["resnet18"]
        state = dict(graph.module.named_parameters())
        for layer in graph:
            for param in layer.params:
                if param in state:
                    assert state[param].is_meta == (layer.name not in mine), (device, param)


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_plan_that_does_not_match_its_cluster_is_refused_before_any_worker_starts(backend):
    plan = _spread_plan("line", THREE)
    moved = tuple(dataclasses.replace(u, device="jetson-nano") if u.device == "rpi4b-1" else u
                  for u in plan.units)
    with pytest.raises(ew.EdgeweaveError, match="placed on 'jetson-nano', which is not a "
                                                "device of cluster"):
        ew.run(dataclasses.replace(plan, units=moved), zoo_model("line")[1], backend=backend)
    assert not multiprocessing.active_children()


def test_bad_run_arguments():
    plan = ew.plan(zoo_graph("line"), "rpi4b")
    with pytest.raises(ew.EdgeweaveError, match="Unknown backend 'cloud'"):
        ew.run(plan, zoo_model("line")[1], backend="cloud")
    with pytest.raises(ew.EdgeweaveError, match="frames must be >= 1"):
        ew.run(plan, zoo_model("line")[1], frames=0)
    with pytest.raises(ew.EdgeweaveError, match="must be a float32 tensor of shape"):
        ew.run(plan, torch.zeros(1, 3, 5, 5), backend="local")
    with pytest.raises(ew.EdgeweaveError, match="must be a tensor, a tuple of tensors or a dict "
                                                "of its arguments by name; got NoneType"):
        ew.run(plan, None)
    with pytest.raises(ew.EdgeweaveError, match="Model 'line' takes x; got mask as well"):
        ew.run(plan, {"x": zoo_model("line")[1][0], "mask": torch.ones(1)})
    with pytest.raises(ew.EdgeweaveError, match="either inputs \\(with frames\\) or a stream"):
        ew.run(plan, zoo_model("line")[1], stream=[zoo_model("line")[1]])
    with pytest.raises(ew.EdgeweaveError, match="frames must be >= 1"):
        ew.run(plan, stream=[])
    with pytest.raises(ew.EdgeweaveError, match="is on device 'meta'; give a CPU tensor"):
        ew.run(plan, torch.zeros(1, 3, 32, 32, device="meta"), backend="local")


def test_emulated_links_and_compute_last_at_least_their_predicted_times():
    graph = zoo_graph("two_branch")
    cluster = ew.Cluster.load(THREE)
    parts = [whole(graph, layer.name, cluster.names[i % 3])
             for i, layer in enumerate(graph) if layer.kind is not OpKind.INPUT]
    plan = build_plan({"two_branch": graph}, cluster, parts)
    result = ew.run(plan, zoo_model("two_branch")[1], backend="local", frames=2,
                    emulate_links=True, emulate_compute=True)
    for output in result.outputs:
        torch.testing.assert_close(output, zoo_output("two_branch")[0])
    timeline = result.timeline
    assert timeline.source.endswith("emulated links and emulated compute")
    predicted = ew.simulate(plan, frames=2)
    # sleeps guarantee lower bounds, whatever the machine's load: each event lasts at least
    # its predicted duration (frame latencies are not bounded: the shared medium's
    # first-come order may differ between prediction and measurement)
    durations = {(e.kind, e.frame, e.unit, e.resource): e.end_s - e.start_s
                 for e in predicted.events}
    for event in timeline.events:
        expected = durations[(event.kind, event.frame, event.unit, event.resource)]
        assert event.end_s - event.start_s >= expected - 1e-9


def test_bad_backend_options_are_named():
    plan = ew.plan(zoo_graph("line"), "rpi4b")
    x = zoo_model("line")[1]
    with pytest.raises(ew.EdgeweaveError, match="The 'detect_s' option of backend 'local' must "
                                                "be a positive number of seconds. Got -1"):
        ew.run(plan, x, backend="local", detect_s=-1)
    with pytest.raises(ew.EdgeweaveError, match="The 'mode' option of backend 'ray' must be one "
                                                "of auto, compiled, plain, messages. Got 'fast' instead."):
        ew.run(plan, x, backend="ray", mode="fast")
    with pytest.raises(ew.EdgeweaveError, match="Backend 'inline' has no option 'detect_s'"):
        ew.run(plan, x, detect_s=1.0)
    assert not multiprocessing.active_children()


def test_the_ray_backend_without_ray_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray then fails
    monkeypatch.delitem(sys.modules, "edgeweave.runtime.ray_backend", raising=False)
    plan = ew.plan(zoo_graph("line"), "rpi4b")
    with pytest.raises(ew.EdgeweaveError, match="The ray backend needs Ray, which is not "
                                                "installed: pip install 'edgeweave\\[ray\\]'"):
        ew.run(plan, zoo_model("line")[1], backend="ray")


def test_a_script_without_a_main_guard_gets_one_line(tmp_path):
    # workers re-run the script: each leaves quietly, the run names the cause
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import edgeweave as ew\n"
        "module, x = ew.models.get('line')\n"
        "plan = ew.plan(ew.trace(module, x), 'rpi4b*2@wifi', planner='equal-split')\n"
        "try:\n"
        "    ew.run(plan, x, backend='local')\n"
        "except ew.EdgeweaveError as error:\n"
        "    print(error)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "needs `if __name__ == '__main__':`" in lines[0], lines


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit():
                parents[int(entry)] = int(
                    open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            pass
    found, below = [], {pid}
    while below:
        below = {child for child, parent in parents.items() if parent in below}
        found += below
    return found


def test_ctrl_c_in_a_terminal_stops_the_run_with_one_line_and_no_process_left():
    command = [sys.executable, "-m", "edgeweave.cli", "run", "two_branch", "-c",
               "rpi4b*2@wifi", "-p", "equal-split", "--backend", "local", "--frames", "100000"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_descendants(run.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)  # the fork server, its two workers, the resource tracker
        workers = _descendants(run.pid)
        time.sleep(2.0)  # the workers run frames
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C sends: the whole process group
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130 and err.strip() == "interrupted", err
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie has ended: it only waits to be reaped)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_driver_leaves_no_worker_alive(tmp_path):
    """Workers watch their driver: killed (SIGKILL: nothing of it runs again), it cannot
    stop them, and they leave within seconds, not spin on re-parented to init."""
    script = tmp_path / "driver.py"
    script.write_text(
        "import edgeweave as ew\n"
        "if __name__ == '__main__':\n"
        "    module, x = ew.models.get('two_branch')\n"
        "    plan = ew.plan(ew.trace(module, x), 'rpi4b*2@wifi', planner='equal-split')\n"
        "    def frames():\n"
        "        while True:\n"
        "            yield x\n"
        "    for index, _ in enumerate(ew.run_stream(plan, frames(), backend='local',\n"
        "                                            interval_s=0.02)):\n"
        "        if index == 3:\n"
        "            print('running', flush=True)\n")
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              text=True, cwd=tmp_path)
    try:
        assert driver.stdout.readline().strip() == "running"
        workers = _descendants(driver.pid)
        assert len(workers) >= 3  # the fork server and its two workers
        driver.kill()
        driver.wait(timeout=30)
    finally:
        driver.kill()
    deadline = time.monotonic() + 15
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)]


class _Positions(torch.nn.Module):
    """A linear layer, and positions that read no input (a transformer's ``arange``)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.linear(x) + torch.arange(x.shape[1], dtype=x.dtype)[:, None]


def input_free_plan() -> tuple[ew.Plan, torch.nn.Module, torch.Tensor, str]:
    """The positions alone on a device of their own: nothing arrives there to start a
    frame. The plan, the module, its input and that device."""
    module, x = _Positions().eval(), torch.randn(1, 5, 8)
    graph = ew.trace(module, x, name="positions")
    cluster = ew.Cluster.load("rpi4b*2@wifi")
    alone = [layer.name for layer in graph if layer.kind is not OpKind.INPUT
             and not layer.inputs]
    parts = [whole(graph, layer.name, "rpi4b-1" if layer.name in alone else "rpi4b-0")
             for layer in graph if layer.kind is not OpKind.INPUT]
    return build_plan({"positions": graph}, cluster, parts), module, x, "rpi4b-1"


def check_input_free_run(result: ew.Run, module, x, device: str, frames: int) -> None:
    """Every frame equal to the model; the device whose units read nothing computed each
    frame once, and no frame that was never fed."""
    with torch.no_grad():
        expected = module(x)
    assert len(result.outputs) == frames
    for output in result.outputs:
        torch.testing.assert_close(output, expected)
    if result.timeline is None:  # inline measures nothing
        return
    computed = [e.frame for e in result.timeline.events
                if e.kind == "compute" and e.resource == device]
    assert sorted(computed) == list(range(frames)) * (len(computed) // frames)
    assert set(computed) == set(range(frames))


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_device_whose_units_read_nothing_waits_for_each_frame(backend):
    plan, module, x, device = input_free_plan()
    result = ew.run(plan, x, backend=backend, frames=3, interval_s=0.3, timeout_s=20)
    check_input_free_run(result, module, x, device, 3)


def test_the_no_progress_timeout_fires_whatever_else_arrives():
    """Reports of frames that are not open (a worker running ahead, late copies) are no
    progress: a coordinator flooded with them still times out on its stalled frame."""
    import queue
    import threading

    from edgeweave.runtime.backend import Frames, Record
    from edgeweave.runtime.coordinator import Coordinator
    from edgeweave.runtime.worker import Report

    plan, _, x, device = input_free_plan()
    inbox: queue.Queue = queue.Queue()
    stop = threading.Event()

    def flood() -> None:
        frame = 10**6
        while not stop.is_set():
            frame += 1
            inbox.put((device, ("report", Report(device, frame, {}, (), True, 0.0))))
            time.sleep(0.001)

    class Silent:
        hint = ""

        def lost(self, devices, frozen, busy_s={}):
            return []

    coordinator = Coordinator(plan, Silent(), lambda device, message: None, inbox, 1.0,
                              Record())
    frames = Frames(plan, [x])
    assert frames.has(0)
    threading.Thread(target=flood, daemon=True).start()
    try:
        with pytest.raises(WorkerError, match="No progress for 1 s on frame 0"):
            list(coordinator.run(frames, None))
    finally:
        stop.set()


class _ViewAfterTravel(torch.nn.Module):
    """``view`` on a layout the model had and a transport does not keep: ``b`` keeps the
    transposed layout of ``a`` in the model, so its transpose back views; it arrives at
    another device contiguous."""

    def forward(self, x):
        b = (x * 2).transpose(1, 2) + 1
        return b.transpose(1, 2).view(1, 24)


@pytest.mark.parametrize("method", ["fx", "export"])
def test_a_view_after_a_tensor_travelled_is_computed(method):
    module, x = _ViewAfterTravel(), torch.randn(1, 4, 6)
    graph = ew.trace(module, x, method=method, name="travel")
    cluster = ew.Cluster.load("rpi4b*2@wifi")
    layers = [layer.name for layer in graph if layer.kind is not OpKind.INPUT]
    parts = [whole(graph, name, "rpi4b-0" if i < 3 else "rpi4b-1")
             for i, name in enumerate(layers)]
    result = ew.run(build_plan({"travel": graph}, cluster, parts), x, backend="local")
    torch.testing.assert_close(result.output, module(x))
