"""Every registered planner, on several models and clusters: a valid plan whose inline
execution equals the model, deterministic for a seed, with clear errors for bad options."""

from __future__ import annotations

import pytest
import torch

import edgeweave as ew
from edgeweave.errors import EdgeweaveError, UnknownNameError
from edgeweave.planners import PLANNERS, plan
from edgeweave.runtime import run_inline
from tests.conftest import assert_equals_model, zoo_graph, zoo_model, zoo_output

CLUSTERS = ["rpi4b+edge-server@wifi", "rpi3*2+jetson-tx2@4g"]
MODELS = ["line", "two_branch", "resnet18", "siamese", "yolov5s"]
# the searches' budgets cut where a test checks plans, not searches
QUICK = {name: {"particles": 8, "loops": 10, "patience": 5} for name in ("lo", "po", "mo")}


@pytest.mark.parametrize("planner", sorted(PLANNERS))
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_plan_runs_inline_equal_to_the_model(planner, model, cluster):
    graph = zoo_graph(model)
    made = plan(graph, cluster, planner=planner, seed=1, **QUICK.get(planner, {}))
    assert made.planner == planner and set(made.graphs) == {model}
    _, inputs = zoo_model(model)
    outputs = run_inline(made, inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for ours, theirs in zip(outputs, zoo_output(model), strict=True):
        assert_equals_model(ours, theirs)


@pytest.mark.parametrize("planner", sorted(PLANNERS))
def test_same_seed_same_plan(planner):
    graph = zoo_graph("two_branch")
    first = plan(graph, CLUSTERS[1], planner=planner, seed=3)
    second = plan(graph, CLUSTERS[1], planner=planner, seed=3)
    assert first.units == second.units and first.order == second.order


@pytest.mark.parametrize("planner", sorted(PLANNERS))
def test_several_models_at_once_each_from_its_own_source(planner):
    graphs = [zoo_graph("line"), zoo_graph("two_branch")]
    made = plan(graphs, CLUSTERS[1], planner=planner, sources={"two_branch": "rpi3-1"},
                **QUICK.get(planner, {}))
    assert made.sources == {"line": "rpi3-0", "two_branch": "rpi3-1"}
    assert made.streams["two_branch"].source == "rpi3-1"
    inputs = {"line": zoo_model("line")[1], "two_branch": zoo_model("two_branch")[1]}
    outputs = run_inline(made, inputs)
    torch.testing.assert_close(outputs["line"], zoo_output("line")[0])
    torch.testing.assert_close(outputs["two_branch"], zoo_output("two_branch")[0])


def test_bad_planner_and_options_are_named():
    graph = zoo_graph("line")
    with pytest.raises(UnknownNameError, match="Unknown planner 'magic'.*neurosurgeon"):
        plan(graph, CLUSTERS[0], planner="magic")
    with pytest.raises(EdgeweaveError, match="Planner 'local' has no option\\(s\\) \\['depth'\\]"):
        plan(graph, CLUSTERS[0], planner="local", depth=3)
    for value in ("x", -1, True):
        with pytest.raises(EdgeweaveError, match=f"'max_paths' option of planner 'johnson' "
                                                 f"must be an integer of at least 1. Got "
                                                 f"{value!r} instead"):
            plan(graph, CLUSTERS[0], planner="johnson", max_paths=value)
    with pytest.raises(EdgeweaveError, match="need different names"):
        plan([graph, graph], CLUSTERS[0])
    assert isinstance(ew.Cluster.load(CLUSTERS[0]), ew.Cluster)


@pytest.mark.parametrize("planner", sorted(PLANNERS))
# inception_resnet_v2 (824 layers, a minute of the suite) is split by test_edgeflow's sweep
@pytest.mark.parametrize("model", sorted(set(ew.models.names()) - set(MODELS)
                                         - {"inception_resnet_v2"}))
def test_every_zoo_model_runs_inline_equal_to_the_model(planner, model):
    made = plan(zoo_graph(model), "rpi4b+edge-server@4g", planner=planner,
                **QUICK.get(planner, {}))
    outputs = run_inline(made, zoo_model(model)[1])
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for ours, theirs in zip(outputs, zoo_output(model), strict=True):
        assert_equals_model(ours, theirs)


class _Constants(torch.nn.Module):
    """Values computed from no input: positions (``arange``), a buffer cast to the
    input's dtype, their product — what planners that place by idle time scatter."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)
        self.register_buffer("scale", torch.ones(5, 1, dtype=torch.float64))

    def forward(self, x):
        positions = torch.arange(x.shape[1], dtype=x.dtype)[:, None]
        return self.linear(x) + positions * self.scale.to(x.dtype)


@pytest.mark.parametrize("planner", sorted(PLANNERS))
def test_constants_sit_with_their_readers(planner):
    from edgeweave.planners.constants import constant_units

    module, x = _Constants().eval(), torch.randn(1, 5, 8)
    made = plan(ew.trace(module, x), "rpi4b*2+jetson-nano+edge-server@wifi",
                planner=planner, **QUICK.get(planner, {}))
    constants = constant_units(made)
    assert len(constants) == 4  # arange, its view, the cast, their product
    for unit in made.units:
        readers = {r.device for r in made.units if any(n.unit == unit.id for n in r.needs)}
        if unit.id in constants and len(readers) == 1:
            assert unit.device in readers, (unit, readers)
    with torch.no_grad():
        assert_equals_model(run_inline(made, x), module(x))
