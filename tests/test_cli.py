"""The command line: listings, inspection, JSON output and one-line errors."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from typer.testing import CliRunner

import edgeweave as ew
import edgeweave.cost  # noqa: F401
from edgeweave.cli import app
from edgeweave.units import serialize

runner = CliRunner()


def test_models_lists_the_zoo():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    assert [entry["name"] for entry in json.loads(result.stdout)] == list(ew.models.names())
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and "yolov5s" in table.stdout


def test_inspect_json_describes_every_layer():
    result = runner.invoke(app, ["inspect", "two_branch", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["structure"] == "multi-path" and len(data["layers"]) == 14
    conv = data["layers"][1]
    assert conv["kind"] == "conv" and conv["geometry"]["kernel"] == [3, 3]
    assert data["flops"] == sum(layer["flops"] for layer in data["layers"])


def test_inspect_table_shows_layers_and_totals():
    result = runner.invoke(app, ["inspect", "line"])
    assert result.exit_code == 0
    assert "features_0" in result.stdout and "total" in result.stdout


def test_inspect_takes_your_own_model(tmp_path):
    source = tmp_path / "net.py"
    source.write_text(textwrap.dedent("""
        import torch
        def build():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    """))
    result = runner.invoke(app, ["inspect", f"{source}:build", "--input-shape", "1,3,6,6",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["layers"][1]["output_shape"] == [1, 4, 4, 4]


def test_unknown_model_is_one_line_and_a_nonzero_exit():
    result = runner.invoke(app, ["inspect", "resnet19"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Unknown model 'resnet19'" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("text, message", [
    ("def build(:\n", r"Importing '.*bad\.py' raised SyntaxError: .*line 1\)"),
    ("import no_such_package_here\n", "Cannot import '.*bad.py': No module named"),
    ("raise RuntimeError('no GPU here')\n", "raised RuntimeError: no GPU here"),
    ("def build():\n    raise ValueError('bad width')\n",
     r"'.*bad\.py:build' raised ValueError: bad width"),
])
def test_a_model_file_that_fails_is_one_line(tmp_path, text, message):
    (tmp_path / "bad.py").write_text(text)
    result = runner.invoke(app, ["inspect", f"{tmp_path / 'bad.py'}:build",
                                 "--input-shape", "1,3,8,8"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.output


def test_a_module_spec_is_found_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "mynets_here").mkdir()
    (tmp_path / "mynets_here" / "__init__.py").write_text(textwrap.dedent("""
        import torch
        def build():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    result = runner.invoke(app, ["inspect", "mynets_here:build", "--input-shape", "1,3,6,6"])
    assert result.exit_code == 0, result.output


def test_plan_compare_and_run_take_an_input_shape_and_leaves(tmp_path):
    source = tmp_path / "own.py"
    source.write_text(textwrap.dedent("""
        import torch
        class Gate(torch.nn.Module):  # control flow on a value: only whole, as a leaf
            def forward(self, x):
                return x * 2 if float(x.sum()) > -1e9 else x
        def build():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), Gate(), torch.nn.Conv2d(4, 4, 3))
    """))
    common = ["-c", "rpi4b*2@wifi", "--input-shape", "1,3,16,16", "--leaf", "1"]
    for args in (["plan", f"{source}:build", "-p", "equal-split"],
                 ["compare", f"{source}:build", "--planners", "local,equal-split"],
                 ["run", f"{source}:build", "-p", "equal-split", "--backend", "inline",
                  "--check"]):
        result = runner.invoke(app, [*args, *common, "--json"])
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_error"] == 0.0


def test_a_model_file_with_keyword_inputs_and_a_dict_output_runs_and_checks(tmp_path):
    source = tmp_path / "keyed.py"
    source.write_text(textwrap.dedent("""
        import torch
        class Keyed(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.linear = torch.nn.Linear(8, 8)
            def forward(self, tokens, mask=None, repeats=1):
                y = self.linear(tokens)
                for _ in range(repeats):
                    y = y.relu() + 1
                return {"hidden": y * mask, "pooled": [y.mean(1)]}
        def build():
            tokens = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(0))
            return Keyed(), {"tokens": tokens, "mask": torch.ones(1, 4, 8), "repeats": 2}
    """))
    for backend in ("inline", "local"):
        result = runner.invoke(app, ["run", f"{source}:build", "-c", "rpi4b*2@wifi", "-p",
                                     "equal-split", "--backend", backend, "--check", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["max_abs_error"] < 1e-5


def test_bad_input_shape_is_one_line():
    for shape in ("a,b", "1,3,-5,5", ""):
        result = runner.invoke(app, ["inspect", "x.py:f", "--input-shape", shape])
        assert result.exit_code == 1 and "--input-shape must look like" in result.output


def test_demo_plans_simulates_and_runs(tmp_path):
    chart = tmp_path / "demo.png"
    # a small model on this host: what is checked is the work, not its speed
    result = runner.invoke(app, ["demo", "--gantt", str(chart), "--host-model", "line",
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {row["planner"] for row in data["comparison"]} == set(ew.planners.PLANNERS)
    host = data["host"]
    assert host["model"] == "line" and host["planner"] == host["ranking"][0][0]
    assert {name for name, _ in host["ranking"]} == set(ew.planners.PLANNERS)
    assert host["max_abs_error"] < 1e-4 and chart.is_file()
    assert host["speedup"] == pytest.approx(host["plain_ms"] / host["measured_ms"])


def test_profile_writes_a_profile_the_cost_model_reads(tmp_path):
    output = tmp_path / "host.json"
    result = runner.invoke(app, ["profile", "line", "-o", str(output), "--repeats", "1",
                                 "--warmup", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["output"] == str(output) and data["total_s"] > 0
    profiles = ew.cost.load(output)
    assert [p.model for p in profiles.values()] == ["line"]


def test_a_saved_plan_of_two_models_runs_from_its_file(tmp_path):
    saved = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", "line,two_branch", "-c", "rpi4b*2@wifi", "-p",
                                 "equal-split", "--source", "two_branch=rpi4b-1", "-o",
                                 str(saved)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["run", str(saved), "--backend", "inline", "--check", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["planner"] == "equal-split" and figures["max_abs_error"] < 1e-5
    result = runner.invoke(app, ["run", "line", "--backend", "inline"])
    assert result.exit_code == 1 and "--cluster is needed" in result.output
    result = runner.invoke(app, ["run", str(saved), "-c", "rpi4b@wifi"])
    assert result.exit_code == 1 and "brings its own cluster" in result.output


def test_plan_then_simulate_with_a_gantt_chart(tmp_path):
    plan_file, chart = tmp_path / "plan.json", tmp_path / "g.png"
    result = runner.invoke(app, ["plan", "two_branch", "-c", "rpi4b+edge-server@wifi",
                                 "-p", "remote", "-o", str(plan_file), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["latency_ms"] > 0 and plan_file.is_file()
    result = runner.invoke(app, ["simulate", str(plan_file), "--frames", "3", "--interval",
                                 "0.01", "--gantt", str(chart), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert len(metrics["latency_s"]) == 3 and metrics["bytes_moved"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("model, cluster", [("resnet18", "rpi4b+edge-server@wifi"),
                                            ("siamese", "rpi4b+edge-server@4g")])
def test_compare_lists_every_planner_and_the_cut_planners_are_never_worse(model, cluster):
    result = runner.invoke(app, ["compare", model, "--cluster", cluster, "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["planner"]: row["latency_ms"] for row in json.loads(result.stdout)}
    assert set(rows) == set(ew.planners.PLANNERS)
    assert rows["neurosurgeon"] <= min(rows["local"], rows["remote"]) + 1e-9
    assert rows["johnson"] <= min(rows["local"], rows["remote"], rows["neurosurgeon"]) + 1e-9


def test_several_models_are_planned_together_each_from_its_own_device(tmp_path):
    plan_file = tmp_path / "plan.json"
    cluster = "rpi4b*2+edge-server@wifi"
    result = runner.invoke(app, ["plan", "line,two_branch,line", "-c", cluster, "-p", "mo",
                                 "--source", "two_branch=rpi4b-1", "-O", "loops=5",
                                 "-o", str(plan_file), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["notes"]["bound_ms"] > 0
    made = serialize.load(plan_file)  # the copies re-traced by their spec
    assert set(made.graphs) == {"line#1", "two_branch", "line#2"}
    assert made.sources["two_branch"] == "rpi4b-1"
    result = runner.invoke(app, ["run", "line,two_branch", "-c", cluster, "-p", "heft",
                                 "--backend", "inline", "--check", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_error"] < 1e-4
    result = runner.invoke(app, ["plan", "line,two_branch", "-c", cluster, "--source",
                                 "moon=rpi4b-1"])
    assert result.exit_code == 1 and "names model(s) ['moon']" in result.output
    result = runner.invoke(app, ["plan", "line", "-c", cluster, "--period", "soon"])
    assert result.exit_code == 1 and "--period wants a number" in result.output


def test_a_workloads_periods_deadlines_and_weights_travel_with_the_plan(tmp_path):
    plan_file = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", "line,two_branch", "-c", "rpi4b*2+edge-server@wifi",
                                 "-p", "heft", "--sources", "two_branch=rpi4b-1",
                                 "--period", "line=0.25", "--deadline", "two_branch=1e-6",
                                 "--weight", "line=2", "-o", str(plan_file)])
    assert result.exit_code == 0, result.output
    assert "per model" in result.output and "rpi4b-1" in result.output
    streams = serialize.load(plan_file).streams
    assert streams["line"] == ew.Stream("rpi4b-0", period_s=0.25, weight=2.0)
    assert streams["two_branch"] == ew.Stream("rpi4b-1", deadline_s=1e-6)
    result = runner.invoke(app, ["simulate", str(plan_file), "--frames", "3", "--json"])
    models = json.loads(result.stdout)["models"]
    assert models["two_branch"]["deadline_met"] == 0.0
    assert models["line"]["throughput_fps"] == pytest.approx(
        3 / (2 * 0.25 + models["line"]["latency_s"][-1]))


def test_plan_reports_the_planners_notes():
    result = runner.invoke(app, ["plan", "multistream", "-c", "rpi4b+edge-server@4g",
                                 "-p", "johnson"])
    assert result.exit_code == 0, result.output
    assert "johnson: multistream: 3 paths from the inputs, cuts" in result.output
    assert "Theorem 3 fails" in result.output


def test_reproduce_wang2021_writes_the_table_beside_the_papers(tmp_path):
    page = tmp_path / "wang2021.md"
    result = runner.invoke(app, ["reproduce", "wang2021", "--out", str(page), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["model"]: row for row in json.loads(result.stdout)["rows"]}
    assert list(rows) == ["AlexNet-P", "GoogLeNet", "ResNet18", "Siamese", "Multi-stream"]
    assert rows["GoogLeNet"]["paper_LO_ms"] == 848
    for row in rows.values():
        for network in row["networks"].values():
            assert network["ratio"] <= 1 + 1e-9  # never worse than LO or RO
    # pipelining the streams pays over 4G, as in the paper
    assert rows["Multi-stream"]["networks"]["4g"]["ratio"] < 0.8
    text = page.read_text()
    assert "| Siamese | 3919 | 8783 | 1998 | 1702 | 1087 | 613 | 469 |" in text
    assert "inferred" in text


def test_run_check_compares_with_the_model_and_draws_both_timelines(tmp_path):
    chart, trace = tmp_path / "run.png", tmp_path / "run.json"
    result = runner.invoke(app, ["run", "two_branch", "-c", "rpi3*2+jetson-tx2@4g", "--check",
                                 "--frames", "2", "--gantt", str(chart), "--trace", str(trace),
                                 "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["max_abs_error"] < 1e-4 and figures["faults"] == []
    assert figures["measured_by"].startswith("measured: local backend")
    assert chart.read_bytes().startswith(b"\x89PNG")
    events = json.loads(trace.read_text())["traceEvents"]
    processes = {e["args"]["name"].split(" (")[0] for e in events if e["name"] == "process_name"}
    assert processes == {"two_branch, neurosurgeon: predicted",
                         "two_branch, neurosurgeon: measured"}
    assert sum(e["ph"] == "X" and e["cat"] == "compute" for e in events) > 0


def test_run_on_the_ray_backend_prints_predicted_and_measured(ray_instance):
    result = runner.invoke(app, ["run", "line", "-c", "rpi3*2+jetson-tx2@4g", "--check",
                                 "--backend", "ray", "--ray-mode", "plain"])
    assert result.exit_code == 0, result.output
    assert "predicted (simulated)" in result.stdout
    assert re.search(r"measured \(ray backend \(plain\), [123] actors?\)", result.stdout)


def test_profile_on_every_device_writes_a_cluster_that_plans_with_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["profile", "line", "-c", "rpi4b+edge-server@wifi", "-o",
                                 "written", "--repeats", "1", "--warmup", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["devices"]) == {"rpi4b", "edge-server"}
    assert data["devices"]["rpi4b"]["host"].startswith("rpi4b on ")
    # the file names its profiles relative to itself: the folder moves, and is read from
    # anywhere; a plan saved with it holds absolute paths
    (tmp_path / "written").rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    cluster = ew.Cluster.load(tmp_path / "moved" / "cluster.yaml")
    tmp_path = tmp_path / "moved"
    monkeypatch.chdir("/")
    graph = ew.trace(*ew.models.get("line"))
    serialize.save(ew.plan(graph, cluster, planner="neurosurgeon"), tmp_path / "plan.json")
    saved = serialize.load(tmp_path / "plan.json", graphs={graph.name: graph})
    assert ew.simulate(saved).latency_s[0] > 0
    assert all(d.profile for d in cluster.devices)
    cost = ew.CostModel.for_cluster(cluster)
    graph = ew.trace(*ew.models.get("line"))
    measured = ew.cost.load(tmp_path / "rpi4b.json")[graph.fingerprint].layer_s
    layer = next(layer for layer in graph if layer.flops)
    assert cost.compute_s(graph, layer, cluster.device("rpi4b")) == measured[layer.name]


def test_planner_options_from_the_command_line(tmp_path):
    saved = tmp_path / "tiles.json"
    result = runner.invoke(app, ["plan", "line", "-c", "rpi4b*2+edge-server@wifi", "-p",
                                 "deepthings", "-O", "n=2", "-O", "m=2", "-O", "reuse=true",
                                 "-O", "gateway=edge-server", "-o", str(saved), "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert notes["gateway"] == "edge-server"
    from edgeweave.units import serialize

    assert serialize.load(saved).options["reuse"] is True


def test_stolen_tiles_from_another_source_on_the_command_line():
    result = runner.invoke(app, ["run", "line", "-c", "x86-core*3@ethernet", "-p",
                                 "deepthings", "-O", "n=2", "-O", "m=2", "-O", "steal=true",
                                 "--source", "x86-core-1", "--check", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_error"] < 1e-4


@pytest.mark.parametrize("args, message", [
    (["plan", "line", "-c", "rpi4b*2@ethernet", "-p", "heft", "--source", "rpi4b-7"],
     "not a device of cluster"),
    (["compare", "line", "-c", "rpi9@wifi"], "Unknown device preset 'rpi9'"),
    (["plan", "line", "-c", "rpi4b", "-p", "magic"], "Unknown planner 'magic'"),
    (["run", "line", "-c", "rpi4b", "--backend", "gpu"], "Unknown backend 'gpu'"),
    (["simulate", "missing.json"], "No plan file 'missing.json'"),
    (["reproduce", "smith1999"], "Unknown experiment 'smith1999'"),
    (["run", "line", "-c", "rpi4b", "--backend", "ray", "--address", "127.0.0.1:1"],
     "The Ray head at '127.0.0.1:1' does not answer"),
    (["worker", "--device", "rpi4b", "--address", "127.0.0.1:1"],
     "The Ray head at '127.0.0.1:1' does not answer"),
    (["profile", "line", "-c", "rpi4b", "--backend", "cloud"], "Unknown profiling backend"),
    (["plan", "line", "-c", "rpi4b", "-p", "fused", "-O", "max_depth"],
     "A planner option is KEY=VALUE"),
    (["plan", "line", "-c", "rpi4b", "-p", "fused", "-O", "depth=3"],
     "Planner 'fused' has no option(s) ['depth']"),
])
def test_bad_names_are_one_line(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_saved_plan_naming_a_file_is_simulated_only_when_trusted(tmp_path):
    model_file = tmp_path / "mine.py"
    model_file.write_text("from edgeweave.models import get\nbuild = lambda: get('line')\n")
    plan_file = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", f"{model_file}:build", "-c", "rpi4b+edge-server@wifi",
                                 "-o", str(plan_file)])
    assert result.exit_code == 0, result.output
    refused = runner.invoke(app, ["simulate", str(plan_file)])
    assert refused.exit_code == 1 and "would import or run code" in refused.output
    assert len(refused.output.strip().splitlines()) <= 3  # one message, wrapped
    assert runner.invoke(app, ["simulate", str(plan_file), "--trust"]).exit_code == 0


def test_outputs_create_their_folders_and_a_file_in_the_way_is_one_line(tmp_path):
    nested = tmp_path / "new" / "deeper" / "plan.json"
    result = runner.invoke(app, ["plan", "line", "-c", "rpi4b*2@wifi", "-o", str(nested)])
    assert result.exit_code == 0 and nested.is_file()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["plan", "line", "-c", "rpi4b*2@wifi",
                                 "-o", str(blocker / "plan.json")])
    assert result.exit_code == 1 and "it is a file, not a folder" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["inspect", "x[/x]"])  # markup in a name is text
    assert result.exit_code == 1 and "Unknown model 'x[/x]'" in result.output


def _images(folder, count):
    """``count`` random images of several sizes, one grey, beside a file that is not one."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (20 + 3 * i, 41, 3), np.uint8)
        image = Image.fromarray(pixels)
        (image.convert("L") if i == 1 else image).save(folder / f"shot-{i:02d}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_run_streams_a_folder_of_images_checking_and_writing_each_output(tmp_path):
    import torch

    from edgeweave.runtime.images import read_image

    folder, written = _images(tmp_path / "shots", 5), tmp_path / "out"
    result = runner.invoke(app, ["run", "two_branch", "-c", "rpi4b*2+edge-server@wifi", "-p",
                                 "equal-split", "--images", str(folder), "--check",
                                 "--outputs", str(written), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["frames"] == 5 and figures["max_abs_error"] < 1e-4
    assert len(figures["measured"]["models"]["two_branch"]["latency_ms"]) == 5
    module = ew.models.get("two_branch")[0]
    for i in range(5):  # each output is the model's on its own image, named after it
        image = read_image(folder / f"shot-{i:02d}.png", (1, 3, 32, 32))
        assert image.shape == (1, 3, 32, 32) and 0 <= image.min() and image.max() <= 1
        torch.testing.assert_close(torch.load(written / f"shot-{i:02d}.pt"), module(image),
                                   rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in written.iterdir()) == [f"shot-{i:02d}.pt" for i in range(5)]


@pytest.mark.parametrize("args, message", [
    (["--images", "nowhere"], "'nowhere' is not a folder of images."),
    (["--images", "{empty}"], "holds no image files"),
    (["--images", "{shots}", "--frames", "2"], "Give --frames or --images, not both"),
    (["--images", "{broken}"], "Cannot read the image '"),
])
def test_bad_image_folders_are_one_line(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    _images(tmp_path / "shots", 1)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bad.jpg").write_bytes(b"not a jpeg")
    args = [a.format(empty=tmp_path / "empty", shots=tmp_path / "shots",
                     broken=tmp_path / "broken") for a in args]
    result = runner.invoke(app, ["run", "line", "-c", "rpi4b*2@wifi", "-p", "equal-split",
                                 *args])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_images_feed_only_a_model_with_one_image_input(tmp_path):
    folder = _images(tmp_path / "shots", 1)
    result = runner.invoke(app, ["run", "line,two_branch", "-c", "rpi4b*2@wifi", "--images",
                                 str(folder)])
    assert result.exit_code == 1 and "--images feeds one model" in result.output
    result = runner.invoke(app, ["run", "torch.nn:Identity", "--input-shape", "1,5,8",
                                 "-c", "rpi4b", "--images", str(folder)])
    assert result.exit_code == 1 and "Images can feed a model with one input of shape " \
        "(1, C, H, W)" in result.output, result.output
