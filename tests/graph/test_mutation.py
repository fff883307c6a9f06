"""Writes into views (issue 28, item 1): a model that writes into slices, strided slices,
selections, masks or indices of a tensor and reads the tensor afterwards runs equal to
itself on every planner's plan, inline and on local workers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import edgeweave as ew
from edgeweave.errors import UntraceableModelError
from edgeweave.planners import PLANNERS
from tests.conftest import assert_equals_model

CLUSTER = "rpi4b*2+jetson-nano+edge-server@wifi"
QUICK = {name: {"particles": 4, "loops": 3, "patience": 2} for name in ("lo", "po", "mo")}
KINDS = ("slice", "strided", "select", "masked_fill_", "index_put_", "copy_", "nested")


class Writer(nn.Module):
    """A convolution, writes into views of its output, then layers that read the whole
    written tensor (and, with ``head``, a convolution of it)."""

    def __init__(self, writes: tuple[tuple[str, int], ...], head: bool = True) -> None:
        super().__init__()
        self.writes, self.head = writes, head
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.mix = nn.Conv2d(6, 4, 1)
        self.register_buffer("channels", torch.tensor([0, 2, 5]))

    def forward(self, x):
        y = self.conv(x).clone()
        for kind, k in self.writes:
            if kind == "slice":
                y[:, k % 4:k % 4 + 2] = y[:, k % 4:k % 4 + 2] * 2 + 1
            elif kind == "strided":
                y[:, k % 3::3] = y[:, k % 3::3].sigmoid()
            elif kind == "select":
                y[:, k % 6] = y[:, (k + 1) % 6].tanh()
            elif kind == "masked_fill_":
                y.masked_fill_(y > 0.3 + k / 10, 0.0)
            elif kind == "index_put_":
                y.index_put_((torch.zeros(1, dtype=torch.long), self.channels),
                             torch.full((3, 8, 8), float(k)), accumulate=k % 2 == 1)
            elif kind == "copy_":
                y[:, :2].copy_(y[:, 2 + k % 3:4 + k % 3] * 0.5)
            else:  # a write through a view of a view
                y[:, :, 1:5][:, :, :, k % 2::2].mul_(-1)
        return self.mix(y) + y[:, :4] if self.head else y


def _example() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))


def _expected(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


@settings(max_examples=12)
@given(writes=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 5)),
                       min_size=1, max_size=3).map(tuple), head=st.booleans())
def test_every_planner_keeps_writes_into_views(writes, head):
    module, x = Writer(writes, head).eval(), _example()
    expected = _expected(module, x)
    graph = ew.trace(module, x)
    assert_equals_model(graph.run(x), expected)
    for planner in sorted(PLANNERS):
        made = ew.plan(graph, CLUSTER, planner=planner, seed=1, **QUICK.get(planner, {}))
        assert_equals_model(ew.run(made, x).output, expected)


@pytest.mark.parametrize("planner", ["equal-split", "edgeflow"])
def test_writes_into_views_on_local_workers(planner):
    module, x = Writer(tuple((kind, 1) for kind in KINDS)).eval(), _example()
    expected = _expected(module, x)
    made = ew.plan(ew.trace(module, x), CLUSTER, planner=planner)
    run = ew.run(made, x, backend="local", frames=2)
    for output in run.outputs:
        assert_equals_model(output, expected)


class Decode(nn.Module):
    """The issue's example: a pose head decoding a third of its channels in place."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        y = self.conv(x).clone()
        y[:, 0::3] = y[:, 0::3].sigmoid()
        return y


def test_the_issues_decoder_is_equal_when_split():
    module, x = Decode().eval(), torch.randn(1, 3, 16, 16)
    made = ew.plan(ew.trace(module, x), CLUSTER, planner="equal-split")
    assert_equals_model(ew.run(made, x).output, _expected(module, x))


class FillsItsBase(nn.Module):
    """fx captures ``masked_fill_`` as a call on ``y`` but returns ``y`` itself: the write
    is no edge of fx's graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        y.masked_fill_(y > 0.2, 0.0)
        return y * 2


def test_fx_refuses_a_hidden_write_and_auto_takes_export():
    module, x = FillsItsBase().eval(), _example()
    with pytest.raises(UntraceableModelError, match="'masked_fill_' writes in place.*"
                                                    "method='export'"):
        ew.trace(module, x, method="fx")
    graph = ew.trace(module, x)
    assert graph.captured_by == "export"
    made = ew.plan(graph, CLUSTER, planner="equal-split")
    assert_equals_model(ew.run(made, x).output, _expected(module, x))


def test_harmless_in_place_layers_stay_with_fx():
    """An ``inplace=True`` ReLU and ``+=`` are read through their own outputs: fx keeps
    them, and its layers keep their modules' names."""
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True)).eval()
    graph = ew.trace(module, _example())
    assert graph.captured_by == "fx"
    assert graph["_1"].attrs.get("in_place")
