"""How a model is called: an example's arguments bound to its ``forward``'s parameters.

An example is one tensor, a tuple (the first forward arguments, in order) or a dict of
forward arguments by name (keyword inputs: ``{"input_ids": ids, "attention_mask": mask}``).
Tensor arguments become the graph's inputs; any other value given (a flag, a count, a
``None``) is fixed in the graph as traced, and the arguments not given keep their
defaults.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgeweave.errors import ExampleInputError


@dataclass(frozen=True)
class Call:
    """An example bound to ``forward``: its named parameters in order, the arguments given
    by position (their names; those beyond the named parameters are ``*args``'s, as
    ``args_0``, ``args_1``…), every given argument by name (``**kwargs``'s too), and the
    defaults of the named parameters not given."""

    parameters: tuple[str, ...]
    positional: tuple[str, ...]
    given: Mapping[str, Any]
    defaults: Mapping[str, Any]

    @property
    def fixed(self) -> dict[str, Any]:
        """The given values that are not tensors, fixed in the graph as traced."""
        return {k: v for k, v in self.given.items() if not isinstance(v, torch.Tensor)}

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self.given[name] for name in self.positional)

    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.given.items() if k not in self.positional}

    def __call__(self, module: nn.Module) -> Any:
        """``module`` called on the example."""
        return module(*self.args, **self.kwargs)


def bind(module: nn.Module, example: Any) -> Call:
    """``example`` bound to ``module.forward``'s parameters; an ``ExampleInputError`` names
    what does not fit (too many arguments, unknown names, a required one missing)."""
    owner = type(module).__name__
    if isinstance(example, torch.Tensor):
        positional, keywords = (example,), {}
    elif isinstance(example, Mapping):
        positional, keywords = (), dict(example)
        if not all(isinstance(key, str) for key in keywords):
            raise ExampleInputError("A dict example names forward arguments: its keys must be "
                                    "strings.")
    elif isinstance(example, list | tuple) and example:
        positional, keywords = tuple(example), {}
    else:
        raise ExampleInputError("The example input must be a tensor, a tuple of forward "
                                "arguments or a dict of them by name.")
    if not any(isinstance(v, torch.Tensor) for v in (*positional, *keywords.values())):
        raise ExampleInputError("The example input must hold at least one tensor.")
    every = list(inspect.signature(module.forward).parameters.values())
    var_positional = next((p.name for p in every if p.kind is p.VAR_POSITIONAL), None)
    var_keyword = any(p.kind is p.VAR_KEYWORD for p in every)
    parameters = [p for p in every if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    named = [p for p in parameters if p.kind is not p.KEYWORD_ONLY]
    if len(positional) > len(named) and var_positional is None:
        raise ExampleInputError(
            f"{owner}.forward takes {len(named)} input(s) ({', '.join(p.name for p in named)}); "
            f"the example gives {len(positional)}.")
    unknown = sorted(set(keywords) - {p.name for p in parameters})
    if unknown and not var_keyword:
        raise ExampleInputError(
            f"{owner}.forward has no argument(s) {', '.join(unknown)}; it takes "
            f"{', '.join(p.name for p in parameters)}.")
    # the arguments beyond the named ones are *args's, named as torch.export names them
    extra = [f"{var_positional}_{i}" for i in range(len(positional) - len(named))]
    names = [p.name for p in named][:len(positional)] + extra
    given = dict(zip(names, positional))
    twice = sorted(set(given) & set(keywords))
    if twice:
        raise ExampleInputError(f"The example gives {', '.join(twice)} twice.")
    given.update(keywords)
    rest = [p for p in parameters if p.name not in given]
    missing = [p.name for p in rest if p.default is p.empty]
    if missing:
        raise ExampleInputError(
            f"{owner}.forward needs {', '.join(missing)} as well; the example gives "
            f"{', '.join(given)} and the rest have no default.")
    order = [p.name for p in named] + extra + [p.name for p in parameters
                                               if p.kind is p.KEYWORD_ONLY] + unknown
    return Call(tuple(p.name for p in parameters), tuple(names),
                {name: given[name] for name in order if name in given},
                {p.name: p.default for p in rest})
