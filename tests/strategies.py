"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from hypothesis import strategies as st

from edgeweave.units import Region


@st.composite
def regions(draw, shape):
    """A non-empty region inside a tensor of ``shape``."""
    bounds = []
    for size in shape:
        start = draw(st.integers(0, size - 1))
        bounds.append((start, draw(st.integers(start + 1, size))))
    return Region(tuple(bounds))
