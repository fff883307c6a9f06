"""Plans: any split executed inline equals the model; every invalid plan is refused by name."""

from __future__ import annotations

import dataclasses
import re
import random

import pytest
import torch

import edgeweave as ew
from edgeweave.errors import ExampleInputError, PlanError
from edgeweave.graph import OpKind
from edgeweave.models._common import seeded
from edgeweave.runtime import run_inline
from edgeweave.units import Need, Part, Plan, Region, build_plan, footprints, validate, whole
from edgeweave.units.compute import compute_unit
from edgeweave.units.validate import _stack_peak_bytes
from tests.conftest import zoo_graph, zoo_model, zoo_output

THREE = "rpi4b*2+edge-server@wifi"


def _small(name: str, side: int):
    """A zoo architecture at a small input, in float64: splits must then agree with the
    whole model to rounding (1e-9), not just to float32's accumulated noise."""
    module = seeded(ew.models.ZOO[name].build, 0, ((1, 3, side, side),)).double()
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(2)).double()
    return module, x, ew.trace(module, x, name=name)


def _bands(graph, layer, devices, dim=2):
    shape = graph[layer].output_shape
    size = shape[dim] if len(shape) > dim else 0
    if size < len(devices):
        return [whole(graph, layer, devices[-1])]
    cuts = [round(i * size / len(devices)) for i in range(len(devices) + 1)]
    full = Region.full(shape)
    return [Part(graph.name, (layer,), full.along(dim, a, b), d)
            for a, b, d in zip(cuts, cuts[1:], devices) if a < b]


def test_whole_layers_across_devices_equal_the_model():
    graph, cluster = zoo_graph("two_branch"), ew.Cluster.load(THREE)
    parts = [whole(graph, layer.name, cluster.names[i % 3])
             for i, layer in enumerate(graph) if layer.kind is not OpKind.INPUT]
    plan = build_plan({graph.name: graph}, cluster, parts)
    _, inputs = zoo_model("two_branch")
    torch.testing.assert_close(run_inline(plan, inputs[0]), zoo_output("two_branch")[0])


@pytest.mark.parametrize("name, side", [("resnet18", 64), ("yolov5s", 96), ("googlenet", 96),
                                        ("mobilenet_v2", 64)])
@pytest.mark.parametrize("dim", [1, 2])
def test_every_layer_split_in_channels_or_rows_equals_the_model(name, side, dim):
    module, x, graph = _small(name, side)
    cluster = ew.Cluster.load(THREE)
    rng = random.Random(dim)
    parts = []
    for layer in graph:
        if layer.kind is OpKind.INPUT:
            continue
        devices = rng.sample(cluster.names, rng.randint(1, 3))
        parts += _bands(graph, layer.name, devices, dim)
    plan = build_plan({name: graph}, cluster, parts)
    expected = module(x)
    got = run_inline(plan, x)
    for ours, theirs in zip(got if isinstance(got, tuple) else (got,),
                            expected if isinstance(expected, tuple) else (expected,)):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_fused_tile_stacks_equal_the_model():
    # DeepThings' shape of plan: the first layers fused into 2x2 tiles on four devices
    module, x, graph = _small("yolov2_16", 96)
    cluster = ew.Cluster.load("rpi3*4@wifi")
    order = graph.topological_order()
    stack = tuple(order[1:9])
    shape = graph[stack[-1]].output_shape
    h, w = shape[2], shape[3]
    tiles = [Region.full(shape).along(2, a, b).along(3, c, d)
             for a, b in ((0, h // 2), (h // 2, h)) for c, d in ((0, w // 2), (w // 2, w))]
    parts = [Part(graph.name, stack, tile, device) for tile, device in zip(tiles, cluster.names)]
    parts += [whole(graph, name, cluster.names[0]) for name in order[9:]]
    plan = build_plan({graph.name: graph}, cluster, parts)
    first = plan.units[1]
    assert first.layers == stack and first.needs[0].region.bounds[2][1] > h // 2 * 8 // 8
    torch.testing.assert_close(run_inline(plan, x), module(x), rtol=1e-9, atol=1e-9)


def test_several_models_in_one_plan():
    line, branch = zoo_graph("line"), zoo_graph("two_branch")
    cluster = ew.Cluster.load(THREE)
    parts = [whole(g, layer.name, cluster.names[i % 3]) for g in (line, branch)
             for i, layer in enumerate(g) if layer.kind is not OpKind.INPUT]
    plan = build_plan({"line": line, "two_branch": branch}, cluster, parts)
    inputs = {"line": zoo_model("line")[1][0], "two_branch": zoo_model("two_branch")[1][0]}
    outputs = run_inline(plan, inputs)
    torch.testing.assert_close(outputs["line"], zoo_output("line")[0])
    torch.testing.assert_close(outputs["two_branch"], zoo_output("two_branch")[0])
    with pytest.raises(ExampleInputError, match="give a dict of inputs by model"):
        run_inline(plan, inputs["line"])


def _line_plan(cluster="rpi4b+edge-server@wifi"):
    graph = zoo_graph("line")
    cluster = ew.Cluster.load(cluster)
    parts = [whole(graph, layer.name, cluster.names[0] if i < 4 else cluster.names[1])
             for i, layer in enumerate(graph) if layer.kind is not OpKind.INPUT]
    return build_plan({"line": graph}, cluster, parts)


def test_text_forms_and_derived_tables():
    plan = _line_plan()
    assert repr(plan.units[2]) == ("u2 line features_1 [0:1,0:16,0:32,0:32] @rpi4b "
                                   "<- u1:features_0[0:1,0:16,0:32,0:32]")
    need = plan.units[2].needs[0]
    assert Need.parse(repr(need)) == need
    assert plan.forwarding["u1"] == (("u2", need),)
    assert plan.order == {"rpi4b": ("u0", "u1", "u2", "u3"),
                          "edge-server": ("u4", "u5", "u6", "u7", "u8")}
    prints = footprints(plan)
    assert prints["rpi4b"].weight_bytes + prints["edge-server"].weight_bytes == \
        zoo_graph("line").param_bytes


def test_invalid_plans_are_refused_by_name():
    plan = _line_plan()
    graph = plan.graphs["line"]
    with pytest.raises(PlanError, match="No unit computes all of output 'fc'"):
        build_plan({"line": graph}, plan.cluster,
                   [whole(graph, layer.name, "rpi4b") for layer in graph
                    if layer.kind is not OpKind.INPUT and layer.name != "fc"]
                   + [Part("line", ("fc",), Region(((0, 1), (0, 5))), "rpi4b")])
    with pytest.raises(PlanError, match="needs .* of layer 'features_0', which no unit"):
        build_plan({"line": graph}, plan.cluster, [whole(graph, "features_1", "rpi4b")])
    with pytest.raises(PlanError, match="not a device of cluster"):
        validate(dataclasses.replace(plan, units=tuple(
            dataclasses.replace(u, device="gpu") if u.id == "u3" else u for u in plan.units)))
    with pytest.raises(PlanError, match="must appear once in the order"):
        validate(dataclasses.replace(plan, order={**plan.order, "rpi4b": ("u0", "u1", "u2")}))
    with pytest.raises(PlanError, match="deadlocks"):
        validate(dataclasses.replace(plan, order={**plan.order,
                                                  "rpi4b": ("u0", "u2", "u1", "u3")}))
    bad_need = Need("u2", "x", Region(((0, 1), (0, 3), (0, 32), (0, 32))))
    with pytest.raises(PlanError, match="which unit u2 does not produce"):
        validate(dataclasses.replace(plan, units=tuple(
            dataclasses.replace(u, needs=(bad_need,)) if u.id == "u1" else u
            for u in plan.units)))
    for region in ("[0:1,0:3,0:40,0:32]", "[0:1,0:3,-2:32,0:32]", "[0:1,0:3,0:32]",
                   "[0:1,0:3,5:5,0:32]", "[0:1,0:4,0:32,0:32]"):
        need = Need("u0", "x", Region.parse(region))
        with pytest.raises(PlanError, match=f"Unit u1 need u0:x.*region {re.escape(region)} "
                                            "of layer 'x' is empty, of the wrong rank or outside"):
            validate(dataclasses.replace(plan, units=tuple(
                dataclasses.replace(u, needs=(need,)) if u.id == "u1" else u
                for u in plan.units)))
    with pytest.raises(PlanError, match="Unit u1 belongs to model 'lime', which the plan does "
                                        "not hold"):
        validate(dataclasses.replace(plan, units=tuple(
            dataclasses.replace(u, graph="lime") if u.id == "u1" else u for u in plan.units)))
    with pytest.raises(PlanError, match="Unit u1 names layer 'nowhere', which model 'line'"):
        validate(dataclasses.replace(plan, units=tuple(
            dataclasses.replace(u, layers=("nowhere",)) if u.id == "u1" else u
            for u in plan.units)))
    with pytest.raises(PlanError, match="which its needs do not cover"):
        validate(dataclasses.replace(plan, units=tuple(
            dataclasses.replace(u, needs=()) if u.id == "u5" else u for u in plan.units)))


def test_a_plan_that_does_not_fit_in_memory_names_the_device():
    graph = zoo_graph("vgg16")
    cluster = ew.Cluster.load({"devices": [{"name": "tiny", "preset": "rpi3",
                                            "memory_bytes": 4e8}]})
    with pytest.raises(PlanError, match=r"Device 'tiny' needs 5\d\d\.\d MB .* but has 400\.0 MB"):
        build_plan({"vgg16": graph}, cluster, [whole(graph, layer.name, "tiny") for layer in graph
                                               if layer.kind is not OpKind.INPUT])


def test_wrong_inputs_are_refused():
    plan = _line_plan()
    with pytest.raises(ExampleInputError, match="must be a float32 tensor of shape"):
        run_inline(plan, torch.zeros(1, 3, 31, 32))
    assert isinstance(plan, Plan)


def test_a_fused_stack_holds_about_two_layers_at_a_time():
    graph = zoo_graph("line")
    cluster = ew.Cluster.load("rpi4b+edge-server@wifi")
    layers = [layer.name for layer in graph if layer.kind is not OpKind.INPUT]
    chain = tuple(layers[:4])  # each layer read only by the next
    fused = build_plan({"line": graph}, cluster,
                       [Part("line", chain, Region.full(graph[chain[-1]].output_shape), "rpi4b"),
                        *(whole(graph, name, "rpi4b") for name in layers[4:])])
    stack = next(u for u in fused.units if u.layers == chain)
    assert fused.read_after[stack.id] == {chain[-1]}
    sizes = [graph[name].output_bytes for name in chain]
    assert _stack_peak_bytes(stack, graph, fused.read_after[stack.id]) == max(
        [sizes[0], *(a + b for a, b in zip(sizes, sizes[1:]))])
    # the stack's kernel hands on only what is read after it, equal to the layers one by one
    inputs = zoo_model("line")[1]
    outputs = compute_unit(graph, stack, [(n, inputs[0]) for n in stack.needs],
                           fused.read_after[stack.id])
    assert set(outputs) == {chain[-1]}
    torch.testing.assert_close(outputs[chain[-1]][1], graph.run_all(*inputs)[chain[-1]])
    torch.testing.assert_close(run_inline(fused, inputs), zoo_output("line")[0])
