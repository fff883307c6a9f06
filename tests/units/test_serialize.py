"""Plans round-trip through JSON and refuse what no longer matches."""

from __future__ import annotations

import json

import pytest
import torch

import edgeweave as ew
from edgeweave.errors import EdgeweaveError, PlanError
from edgeweave.units import serialize
from tests.conftest import zoo_graph, zoo_model, zoo_output


def test_round_trip_by_spec_and_by_graph(tmp_path):
    graph = zoo_graph("two_branch")
    plan = ew.plan(graph, "rpi3*2+jetson-tx2@4g", planner="neurosurgeon",
                   models={"two_branch": "two_branch"})
    path = tmp_path / "plan.json"
    serialize.save(plan, path)
    again = serialize.load(path)  # re-traced from the zoo spec
    assert again.units == plan.units and again.order == plan.order
    assert again.cluster == plan.cluster and again.planner == "neurosurgeon"
    torch.testing.assert_close(ew.run(again, zoo_model("two_branch")[1]).output,
                               zoo_output("two_branch")[0])
    assert serialize.from_json(serialize.to_json(plan), {"two_branch": graph}).units == plan.units


def test_bad_plan_files_are_named(tmp_path):
    graph = zoo_graph("line")
    plan = ew.plan(graph, "rpi4b+edge-server@wifi", models={"line": "line"})
    data = json.loads(serialize.to_json(plan))
    with pytest.raises(PlanError, match="No plan file"):
        serialize.load(tmp_path / "none.json")
    with pytest.raises(PlanError, match="Not an edgeweave plan"):
        serialize.from_json("{}")
    with pytest.raises(PlanError, match="Malformed plan file"):
        serialize.from_json(json.dumps({**data, "units": [{"id": "u0"}]}))
    changed = {**data, "models": {"line": {**data["models"]["line"], "fingerprint": "0" * 16}}}
    with pytest.raises(PlanError, match="no longer matches the plan"):
        serialize.from_json(json.dumps(changed))
    anonymous = {**data, "models": {"line": {**data["models"]["line"], "spec": None}}}
    with pytest.raises(EdgeweaveError, match="has no spec to load it from"):
        serialize.from_json(json.dumps(anonymous))
    broken = {**data, "order": {**data["order"], "rpi4b": []}}
    with pytest.raises(PlanError, match="must appear once in the order"):
        serialize.from_json(json.dumps(broken))


def test_a_plan_file_naming_code_runs_nothing_unless_trusted(tmp_path):
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.py"
    hostile.write_text(f"open({str(marker)!r}, 'w').close()\n"
                       "from edgeweave.models import get\nbuild = lambda: get('line')\n")
    plan = ew.plan(zoo_graph("line"), "rpi4b+edge-server@wifi", models={"line": "line"})
    data = json.loads(serialize.to_json(plan))
    for spec in (f"{hostile}:build", "this:s"):
        named = {**data, "models": {"line": {**data["models"]["line"], "spec": spec}}}
        with pytest.raises(PlanError, match=f"'line' is loaded by '{spec}', which would import"):
            serialize.from_json(json.dumps(named))
    assert not marker.exists()
    trusted = {**data, "models": {"line": {**data["models"]["line"], "spec": f"{hostile}:build"}}}
    assert serialize.from_json(json.dumps(trusted), trust_specs=True).units == plan.units
    assert marker.exists()
