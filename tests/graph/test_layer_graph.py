"""Graph queries: structure classes, cut points against brute force, partial execution."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from edgeweave.errors import GraphError
from edgeweave.graph import Structure
from tests.conftest import zoo_graph, zoo_model, zoo_output

STRUCTURES = {
    "line": Structure.LINE, "alexnet": Structure.LINE, "vgg16": Structure.LINE,
    "yolov2_16": Structure.LINE, "two_branch": Structure.MULTI_PATH,
    "siamese": Structure.MULTI_PATH, "multistream": Structure.MULTI_PATH,
    "yolov2": Structure.MULTI_PATH, "resnet18": Structure.DAG, "googlenet": Structure.DAG,
    "yolov5s": Structure.DAG, "inception_resnet_v2": Structure.DAG,
    "mobilenet_v2": Structure.DAG,
}


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_structure_class(name):
    assert zoo_graph(name).structure is STRUCTURES[name]


def _brute_force_cut_points(graph) -> tuple[str, ...]:
    digraph = graph.to_networkx()
    cuts = []
    for name in graph.topological_order():
        rest = digraph.copy()
        rest.remove_node(name)
        connected = any(nx.has_path(rest, i, o) for i in graph.inputs if i != name
                        for o in graph.outputs if o != name)
        if not connected:
            cuts.append(name)
    return tuple(cuts)


@pytest.mark.parametrize("name", ["line", "two_branch", "resnet18", "googlenet", "siamese",
                                  "multistream", "yolov2", "yolov5s"])
def test_cut_points_match_brute_force(name):
    graph = zoo_graph(name)
    assert graph.cut_points == _brute_force_cut_points(graph)


def test_yolov5s_has_no_cut_point_after_the_p3_tap():
    # Seed 002: the whole neck and head of YOLOv5 have no cut point; only the stem does.
    graph = zoo_graph("yolov5s")
    last_cut = graph.cut_points[-1]
    assert graph[last_cut].target == "b4.cv3.2"  # the P3 output, read again by the neck
    assert len(graph.successors(last_cut)) == 2
    assert graph.index_of(last_cut) <= len(graph) // 4  # 150 of 200 layers lie after it


def test_neighbours_and_order():
    graph = zoo_graph("two_branch")
    assert graph.predecessors("cat") == ("left_1", "right_2")
    assert graph.successors("stem_1") == ("left_0", "right_0")
    order = graph.topological_order()
    assert order[0] == "x" and order[-1] == graph.outputs[0]
    with pytest.raises(GraphError, match="no layer 'nope'"):
        graph.successors("nope")


@pytest.mark.parametrize("name", ["resnet18", "yolov5s"])
def test_executing_the_graph_in_two_parts_equals_the_model(name):
    graph = zoo_graph(name)
    _, inputs = zoo_model(name)
    order = graph.topological_order()
    cut = graph.index_of(graph.cut_points[len(graph.cut_points) // 2])
    values = dict(zip(graph.inputs, inputs))
    first = graph.execute(values, order[len(inputs): cut + 1])
    # the second part sees only the cut tensor, as a device after the cut would
    second = graph.execute({order[cut]: first[order[cut]]}, order[cut + 1:])
    output = graph.assemble_outputs(second)
    outputs = output if isinstance(output, tuple) else (output,)
    for ours, theirs in zip(outputs, zoo_output(name), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_partial_execution_names_a_missing_input():
    graph = zoo_graph("two_branch")
    with pytest.raises(GraphError, match="'cat' needs the output of layer 'left_1'"):
        graph.execute({"right_2": torch.zeros(1, 16, 32, 32)}, ["cat"])
    with pytest.raises(GraphError, match="Model input 'x' must be given"):
        graph.execute({}, ["x"])
    with pytest.raises(GraphError, match=r"Layer 'cat' \(torch.cat\) failed"):
        graph.execute({"left_1": torch.zeros(1, 16, 32, 32),
                       "right_2": torch.zeros(1, 16, 31, 32)}, ["cat"])
