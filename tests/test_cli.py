"""The command line: listings, inspection, JSON output and one-line errors."""

from __future__ import annotations

import json
import textwrap

from typer.testing import CliRunner

import edgeweave as ew
import edgeweave.cost  # noqa: F401
from edgeweave.cli import app

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


def test_bad_input_shape_is_one_line():
    result = runner.invoke(app, ["inspect", "x.py:f", "--input-shape", "a,b"])
    assert result.exit_code == 1 and "--input-shape must look like" in result.output


def test_demo_traces_its_models():
    result = runner.invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {row["model"] for row in rows} >= {"resnet18", "yolov5s"}
    assert all(row["flops"] > 0 and row["layers"] > 0 for row in rows)


def test_profile_writes_a_profile_the_cost_model_reads(tmp_path):
    output = tmp_path / "host.json"
    result = runner.invoke(app, ["profile", "line", "-o", str(output), "--repeats", "1",
                                 "--warmup", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["output"] == str(output) and data["total_s"] > 0
    profiles = ew.cost.load(output)
    assert [p.model for p in profiles.values()] == ["line"]
