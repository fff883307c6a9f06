"""DeepThings' fused tile partitioning (seed 003): the grid as the authors cut it, tiles
that cover the map once, receptive fields equal to brute force, plans that equal the
model, the seed's redundancy figures, the automatic choice and clear errors."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import edgeweave as ew
from edgeweave.errors import PlanError
from edgeweave.models import yolov2
from edgeweave.planners.deepthings import cut_points, grid, shrunk, tiles
from edgeweave.runtime import run_inline
from edgeweave.units import Region, covers, required_regions
from tests.conftest import assert_equals_model
from tests.strategies import regions
from tests.units.test_region import _support

CLUSTER = "rpi3*3+edge-server@wifi"


@given(size=st.integers(1, 700), parts=st.integers(1, 12))
def test_grid_is_the_authors_step_and_covers_once(size, parts):
    ranges = grid(size, parts)
    step = math.ceil(size / parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == size and len(ranges) <= parts
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(stop - start == step for start, stop in ranges[:-1])
    assert 0 < ranges[-1][1] - ranges[-1][0] <= step


@given(h=st.integers(1, 40), w=st.integers(1, 40), n=st.integers(1, 6), m=st.integers(1, 6))
def test_tiles_partition_the_map(h, w, n, m):
    shape = (1, 3, h, w)
    found = tiles(shape, n, m)
    assert sum(t.numel for t in found) == math.prod(shape)
    assert covers(found, Region.full(shape))


@st.composite
def stacks(draw):
    """A random stack of convolutions (any kernel, stride, padding, dilation) and average
    pools, with positive weights so that brute force sees every element read."""
    layers: list[nn.Module] = []
    channels = 2
    for _ in range(draw(st.integers(1, 4))):
        k, s = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        if draw(st.booleans()):
            conv = nn.Conv2d(channels, 2, k, s, draw(st.integers(0, k)), draw(st.integers(1, 2)))
            nn.init.uniform_(conv.weight, 0.1, 1.0)
            layers.append(conv)
        else:
            layers.append(nn.AvgPool2d(k, s, draw(st.integers(0, k // 2))))
    return nn.Sequential(*layers).eval()


@settings(max_examples=60, deadline=None)
@given(stack=stacks(), data=st.data(), h=st.integers(24, 40), w=st.integers(24, 40))
def test_tile_receptive_fields_equal_brute_force(stack, data, h, w):
    x = torch.rand(1, 2, h, w) + 0.1
    try:
        out_shape = stack(x).shape
    except RuntimeError:  # the stack shrank the map to nothing
        return
    graph = ew.trace(stack, x)
    layers = graph.topological_order()[1:]
    n, m = data.draw(st.integers(1, out_shape[2])), data.draw(st.integers(1, out_shape[3]))
    for tile in tiles(out_shape, n, m):
        needs = required_regions(graph, {layers[-1]: tile}, layers)
        (support,) = _support(stack, (x,), tile)
        computed = needs[graph.inputs[0]]
        if support is None:  # a tile of the border that reads only padding
            continue
        assert computed.contains(support)
        if all(_dense(layer) for layer in stack):  # holes may leave a clipped end unread
            assert computed == support, (tile, computed, support)


def _dense(layer: nn.Module) -> bool:
    """True when every element of a window is read: no dilation, no stride past the kernel."""
    kernel, stride = _pair(layer.kernel_size), _pair(layer.stride)
    return _pair(getattr(layer, "dilation", 1)) == (1, 1) and all(
        s <= k for s, k in zip(stride, kernel))


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, tuple) else (value, value)


def _awkward() -> nn.Module:
    """Odd sizes, a stride of 2 with a kernel of 4, a dilated conv, a pool that does not
    divide the map, and a tail after the cut."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, 1, 1), nn.ReLU(), nn.Conv2d(6, 6, 4, 2, 1), nn.BatchNorm2d(6),
        nn.LeakyReLU(0.1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(6, 8, 3, 1, 2, dilation=2),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def _awkward_case():
    """The awkward net, a frame of odd size, its graph and its output."""
    torch.manual_seed(0)
    model, x = _awkward(), torch.randn(1, 3, 37, 29)
    with torch.no_grad():
        return model, x, ew.trace(model, x), model(x)


@pytest.mark.parametrize("n, m", [(1, 1), (2, 3), (3, 3), (5, 5), (4, 1)])
def test_tiled_plans_equal_the_model_at_every_depth(n, m):
    _, x, graph, expected = _awkward_case()
    names = [layer.name for layer in graph][1:]
    for count in cut_points(graph, names):
        made = ew.plan(graph, CLUSTER, planner="deepthings", n=n, m=m, layers=count)
        tiles_made = [u for u in made.units if u.layers == tuple(names[:count])]
        assert made.notes["fused_layers"] == count
        assert len({u.region for u in tiles_made}) == len(tiles_made) <= n * m
        assert_equals_model(run_inline(made, x), expected)


@given(region=regions((1, 1, 12, 12)), others=st.lists(regions((1, 1, 12, 12)), max_size=4))
def test_a_shrunk_region_leaves_out_only_what_others_computed(region, others):
    left = shrunk(region, others)
    assert region.contains(left)
    for r in range(*region.bounds[2]):
        for c in range(*region.bounds[3]):
            point = Region(((0, 1), (0, 1), (r, r + 1), (c, c + 1)))
            assert left.contains(point) or any(o.contains(point) for o in others)


@pytest.mark.parametrize("n, m", [(2, 3), (3, 3), (5, 5)])
def test_reusing_tiles_equal_the_model_and_compute_less(n, m):
    _, x, graph, expected = _awkward_case()
    for count in cut_points(graph, [layer.name for layer in graph][1:])[2:]:
        plain = ew.plan(graph, CLUSTER, planner="deepthings", n=n, m=m, layers=count)
        reusing = ew.plan(graph, CLUSTER, planner="deepthings", n=n, m=m, layers=count,
                          reuse=True)
        assert_equals_model(run_inline(reusing, x), expected)
        for without, tile in zip(plain.notes["tiles"], reusing.notes["tiles"], strict=True):
            assert tile["flops"] <= tile["flops_without_reuse"] == without["flops"]
        assert reusing.notes["redundancy"][graph.name] < plain.notes["redundancy"][graph.name]


def test_yolov2_redundancy_matches_the_seed():
    # seed 003: over YOLOv2's first 16 layers at 608x608, a 3x3 grid computes about 1.53x
    # the frame's operations and a 5x5 grid about 2.2x
    module, x = ew.models.get("yolov2_16")
    graph = ew.trace(module, x)
    every = len(graph.layers) - 1  # the 16 darknet layers, each conv with its norm and activation
    found = {}
    for k in (3, 5):
        made = ew.plan(graph, CLUSTER, planner="deepthings", n=k, m=k, layers=every)
        found[k] = made.notes["redundancy"][graph.name]
        assert len(made.notes["tiles"]) == k * k
    assert found[3] == pytest.approx(1.53, abs=0.08)
    assert found[5] == pytest.approx(2.2, abs=0.12)
    for k, at_most in ((3, 1.1), (5, 1.3)):  # reuse: odd tiles take their neighbours' strips
        made = ew.plan(graph, CLUSTER, planner="deepthings", n=k, m=k, layers=every, reuse=True)
        assert made.notes["redundancy"][graph.name] < at_most


def test_yolov2_16_tiles_equal_the_model_on_a_smaller_frame():
    module = yolov2.yolov2_16().eval()
    x = torch.randn(1, 3, 160, 160)
    graph = ew.trace(module, x)
    with torch.no_grad():
        expected = module(x)
    for k, reuse in ((3, False), (5, False), (3, True), (5, True)):
        made = ew.plan(graph, CLUSTER, planner="deepthings", n=k, m=k,
                       layers=len(graph.layers) - 1, reuse=reuse)
        assert_equals_model(run_inline(made, x), expected)


def test_the_automatic_choice_is_the_fastest_simulated():
    graph = _awkward_case()[2]
    chosen = ew.plan(graph, CLUSTER, planner="deepthings", max_grid=3)
    assert chosen.notes["predicted_ms"] == pytest.approx(1e3 * ew.simulate(chosen).latency_s[0])
    for count in cut_points(graph, [layer.name for layer in graph][1:]):
        for k in (1, 2, 3):
            fixed = ew.plan(graph, CLUSTER, planner="deepthings", n=k, m=k, layers=count)
            assert chosen.notes["predicted_ms"] <= fixed.notes["predicted_ms"] + 1e-9


@pytest.mark.parametrize("after", ["edgeflow", "equal-split", "heft"])
def test_the_layers_after_the_cut_planned_by_another_planner(after):
    _, x, graph, expected = _awkward_case()
    made = ew.plan(graph, CLUSTER, planner="deepthings", n=2, m=2, layers=5, after=after)
    rest = {u.device for u in made.units if len(u.layers) < 5}
    assert rest  # the tail is placed, by that planner
    assert_equals_model(run_inline(made, x), expected)


def test_a_gateway_that_only_merges_gets_no_tile():
    _, x, graph, expected = _awkward_case()
    made = ew.plan(graph, CLUSTER, planner="deepthings", n=3, m=3, layers=5,
                   gateway="edge-server", gateway_tiles=False)
    assert {t["device"] for t in made.notes["tiles"]} <= {"rpi3-0", "rpi3-1", "rpi3-2"}
    assert_equals_model(run_inline(made, x), expected)


def test_a_model_with_nothing_to_tile_is_planned_by_after():
    module, x = ew.models.get("line")
    graph = ew.trace(module, x)
    made = ew.plan(graph, CLUSTER, planner="deepthings")
    assert made.notes["fused_layers"] in (0, *cut_points(graph, [n.name for n in graph][1:]))
    assert_equals_model(run_inline(made, x), module(x))


@pytest.mark.parametrize("options, named", [
    ({"n": 0}, "'n' option"), ({"m": "x"}, "'m' option"), ({"layers": 9}, "'layers' option"),
    ({"gateway": "nowhere"}, "'gateway' option"), ({"after": "magic"}, "'after' option"),
    ({"max_grid": 0}, "'max_grid' option"), ({"reuse": "yes"}, "'reuse' option"),
    ({"gateway_tiles": 1}, "'gateway_tiles' option"), ({"share": 1}, "'share' option")])
def test_bad_options_are_named(options, named):
    with pytest.raises(PlanError, match=named):
        ew.plan(_awkward_case()[2], CLUSTER, planner="deepthings", **options)


def test_work_sharing_collects_every_cameras_tiles_on_the_gateway_and_hands_them_out_equally():
    _, x, graph, expected = _awkward_case()
    graphs = {name: dataclasses.replace(graph, name=name) for name in ("cam0", "cam1")}
    made = ew.plan(graphs, "rpi4b*4@wifi", planner="deepthings", n=3, m=3, layers=8,
                   share=True, gateway="rpi4b-0",
                   sources={"cam0": "rpi4b-1", "cam1": "rpi4b-2"})
    relays = {u.graph: u for u in made.units if u.relay}
    assert set(relays) == {"cam0", "cam1"} and {u.device for u in relays.values()} == {"rpi4b-0"}
    stacks = [u for u in made.units if len(u.layers) == 8]
    assert len(stacks) == 18
    for unit in stacks:  # tiles read the frame from the gateway, not from the camera
        assert {made.unit(n.unit).id for n in unit.needs} == {relays[unit.graph].id}
    per_device = Counter(u.device for u in stacks)
    assert set(per_device) == set(made.cluster.names)
    assert max(per_device.values()) - min(per_device.values()) <= 1
    outputs = run_inline(made, {"cam0": x, "cam1": x})
    for name in graphs:
        assert_equals_model(outputs[name], expected)
    with pytest.raises(PlanError, match="not both"):
        ew.plan(graph, CLUSTER, planner="deepthings", share=True, steal=True)


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_reusing_tiles_run_equal_to_the_model_on_workers(backend, request):
    if backend == "ray":
        request.getfixturevalue("ray_instance")
    _, x, graph, expected = _awkward_case()
    made = ew.plan(graph, "rpi4b*2+edge-server@ethernet", planner="deepthings", n=3, m=3,
                   layers=8, reuse=True)
    assert len({u.device for u in made.units if len(u.layers) == 1}) > 1
    for output in ew.run(made, x, backend=backend, frames=2).outputs:
        assert_equals_model(output, expected)


def test_the_reproduction_page_sets_the_plans_beside_the_seed(tmp_path):
    from edgeweave.experiments import deepthings as experiment

    result = experiment.reproduce(grids=(3,), device_counts=(1, 2), real_edges=(),
                                  source_counts=(1, 2))
    plain, reusing = result.find(3, "FTP", 2), result.find(3, "FTP + reuse", 2)
    assert plain.redundancy == pytest.approx(1.53, abs=0.08)
    assert reusing.redundancy < plain.redundancy and reusing.latency_ms < plain.latency_ms
    for mode in ("FTP", "FTP-WST"):  # a second Pi helps, planned or stolen
        assert result.find(3, mode, 2).latency_ms < result.find(3, mode, 1).latency_ms
    two = {(r.grid, r.mode): r for r in result.sources if r.sources == 2}
    assert two[3, "FTP-WST"].throughput_fps > two[3, "FTP"].throughput_fps
    modnn = result.find(3, "MoDNN", 2)  # the seed: layer-based moves more and needs more
    assert modnn.sent_bytes > plain.sent_bytes and modnn.peak_device_bytes > plain.peak_device_bytes
    page = tmp_path / "deepthings.md"
    result.write(page)
    text = page.read_text()
    assert "| 3x3 | 1.53x | 1.07x | 1.53x |" in text and "Not reproduced yet" in text


class _DeadBranch(torch.nn.Module):
    """A layer computed and never read (timm's DLA keeps such a projection)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1)
        self.unused = torch.nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.a(x)
        self.unused(y)
        return self.b(y)


def test_a_layer_nothing_reads_is_left_out_of_the_tiles():
    module, x = _DeadBranch().eval(), torch.randn(1, 3, 16, 16)
    graph = ew.trace(module, x)
    made = ew.plan(graph, CLUSTER, planner="deepthings", n=2, m=2)
    assert_equals_model(run_inline(made, x), module(x))
