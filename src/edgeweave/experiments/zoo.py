"""What every reproduction does with a zoo model: trace it, and check plans against it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgeweave import models
from edgeweave.graph import LayerGraph, trace
from edgeweave.runtime import run_inline
from edgeweave.units import Plan


@dataclass(frozen=True)
class Traced:
    """A zoo model's example inputs, traced graph and own outputs (always a tuple)."""

    inputs: tuple[torch.Tensor, ...]
    graph: LayerGraph
    expected: tuple[torch.Tensor, ...]
    module: torch.nn.Module = field(repr=False)

    def check(self, made: Plan) -> Plan:
        """``made`` after checking that its inline execution equals the model's output."""
        self.check_output(run_inline(made, self.inputs))
        return made

    def check_output(self, outputs) -> None:
        """Raise unless ``outputs`` (a tensor or a tuple) equal the model's."""
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        for ours, theirs in zip(outputs, self.expected, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def traced(name: str) -> Traced:
    """The zoo model ``name``, traced under that name."""
    module, example = models.get(name)
    inputs = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        expected = module(*inputs)
    return Traced(inputs, trace(module, inputs, name=name),
                  expected if isinstance(expected, tuple) else (expected,), module)
