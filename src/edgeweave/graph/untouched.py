"""The user's module left exactly as ``trace`` found it.

Capturing runs the model: torch.fx with proxies, torch.export with fake tensors, and the
profile on the example. A module that caches per-shape values in its attributes (a
detection head's ``self.anchors`` when ``self.shape`` changes, with class-level defaults)
would keep what it cached then — a fake tensor after torch.export, and the user's own
``module(x)`` would return a ``FakeTensor``. ``left_as_found`` restores every submodule's
attributes (parameters, buffers and submodules tables included), every attribute its
classes gained or changed, and the values of tensors written in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

_TABLES = ("_parameters", "_buffers", "_modules")


def _classes(module: nn.Module) -> list[type]:
    """The module's own classes, up to (not including) ``nn.Module``."""
    return [cls for cls in type(module).__mro__
            if issubclass(cls, nn.Module) and cls is not nn.Module]


def _tensors(module: nn.Module) -> list[torch.Tensor]:
    found = [*module._parameters.values(), *module._buffers.values()]
    found += [value for value in vars(module).values() if isinstance(value, torch.Tensor)]
    return [t for t in found if isinstance(t, torch.Tensor)]


@contextlib.contextmanager
def left_as_found(module: nn.Module) -> Iterator[None]:
    """Whatever runs inside, ``module`` and its submodules (and their classes) end as they
    were: attributes, parameters, buffers, submodules and tensor values."""
    modules = list(module.modules())
    attributes = [(m, dict(vars(m)), {t: dict(getattr(m, t)) for t in _TABLES}) for m in modules]
    classes = {cls: dict(vars(cls)) for m in modules for cls in _classes(m)}
    tensors: dict[int, tuple[torch.Tensor, int, torch.Tensor]] = {}
    for m in modules:
        for tensor in _tensors(m):
            if id(tensor) not in tensors and tensor.device.type != "meta":
                tensors[id(tensor)] = (tensor, tensor._version, tensor.detach().clone())
    try:
        yield
    finally:
        for m, saved, tables in attributes:
            vars(m).clear()
            vars(m).update(saved)
            for name, content in tables.items():
                getattr(m, name).clear()
                getattr(m, name).update(content)
        for cls, saved in classes.items():
            _restore_class(cls, saved)
        with torch.no_grad():
            for tensor, version, value in tensors.values():
                if tensor._version != version:
                    tensor.copy_(value)


def _restore_class(cls: type, saved: dict[str, Any]) -> None:
    for name in [n for n in vars(cls) if n not in saved]:
        delattr(cls, name)
    for name, value in saved.items():
        if name not in vars(cls) or vars(cls)[name] is not value:
            setattr(cls, name, value)
