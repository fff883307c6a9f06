"""The model zoo: published architectures with seeded random weights, no downloads.

``get(name)`` returns ``(module in eval mode, example input)``; the example is one tensor,
or a tuple of tensors for models with several inputs. ``load(spec)`` also takes a model
of your own, as ``package.module:factory`` or ``path/to/file.py:factory``.

>>> module, example = get("resnet18")
>>> tuple(module(example).shape)
(1, 1000)
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgeweave.errors import ModelError, UnknownNameError
from edgeweave.models import (
    alexnet,
    googlenet,
    inception_resnet,
    mobilenet,
    multi_input,
    resnet,
    toy,
    vgg,
    yolov2,
    yolov5,
)
from edgeweave.models._common import seeded

Example = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass(frozen=True, slots=True)
class ZooEntry:
    """One zoo model: how to build it, its input shapes (batch 1) and a line about it."""

    name: str
    build: Callable[[], nn.Module]
    input_shapes: tuple[tuple[int, ...], ...]
    description: str


def _image(side: int, count: int = 1) -> tuple[tuple[int, ...], ...]:
    return ((1, 3, side, side),) * count


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry("alexnet", alexnet.AlexNet, _image(224), "AlexNet, single tower"),
        ZooEntry("alexnet_p", alexnet.AlexNetP, _image(224),
                 "AlexNet as published: two towers (seed 001's AlexNet-P)"),
        ZooEntry("vgg16", vgg.VGG16, _image(224), "VGG-16 (configuration D)"),
        ZooEntry("googlenet", googlenet.GoogLeNet, _image(224), "GoogLeNet, no aux heads"),
        ZooEntry("resnet18", resnet.resnet18, _image(224), "ResNet-18"),
        ZooEntry("resnet50", resnet.resnet50, _image(224), "ResNet-50"),
        ZooEntry("mobilenet_v2", mobilenet.MobileNetV2, _image(224), "MobileNetV2, width 1.0"),
        ZooEntry("inception_resnet_v2", inception_resnet.InceptionResNetV2, _image(299),
                 "Inception-ResNet-v2, full size"),
        ZooEntry("yolov2", yolov2.YOLOv2, _image(608), "YOLOv2: Darknet-19 + detection head"),
        ZooEntry("yolov2_16", yolov2.yolov2_16, _image(608),
                 "YOLOv2's first 16 layers (DeepThings' fused part)"),
        ZooEntry("yolov5s", yolov5.YOLOv5s, _image(640), "YOLOv5s v6/v7, 3 detection outputs"),
        ZooEntry("siamese", multi_input.Siamese, _image(224, 2),
                 "two weight-shared conv branches joined"),
        ZooEntry("multistream", multi_input.MultiStream, _image(224, 3),
                 "three AlexNet conv streams fused at the end"),
        ZooEntry("line", toy.LineNet, _image(32), "small line net (tests)"),
        ZooEntry("two_branch", toy.TwoBranchNet, _image(32), "small two-branch net (tests)"),
    )
}


def names() -> tuple[str, ...]:
    """The names of the zoo's models."""
    return tuple(ZOO)


def example_input(shapes: tuple[tuple[int, ...], ...], seed: int = 0) -> Example:
    """A seeded random input of the given shapes: a tensor, or a tuple for several."""
    generator = torch.Generator().manual_seed(seed)
    tensors = tuple(torch.randn(shape, generator=generator) for shape in shapes)
    return tensors[0] if len(tensors) == 1 else tensors


def get(name: str, seed: int = 0) -> tuple[nn.Module, Example]:
    """A zoo model in eval mode with seeded weights, and a seeded example input."""
    if name not in ZOO:
        raise UnknownNameError(f"Unknown model '{name}'. Known models: {', '.join(ZOO)}.")
    entry = ZOO[name]
    return seeded(entry.build, seed, entry.input_shapes), example_input(entry.input_shapes, seed)


def load(spec: str, input_shape: tuple[int, ...] | None = None,
         seed: int = 0) -> tuple[nn.Module, Example]:
    """A zoo model by name, or your own model from ``module:attr`` or ``file.py:attr``.

    ``attr`` is an ``nn.Module``, or a callable returning a module or ``(module, example)``.
    Where no example comes with it, ``input_shape`` gives the shape of a random one.
    """
    if ":" not in spec:
        return get(spec, seed)
    where, _, attr = spec.rpartition(":")
    obj = getattr(_import(where), attr, None)
    if obj is None:
        raise UnknownNameError(f"'{where}' has no attribute '{attr}' (from model spec '{spec}').")
    try:
        made = obj if isinstance(obj, nn.Module) else obj()
    except Exception as error:  # the user's factory: its failure is theirs, named in a line
        raise ModelError(f"'{spec}' raised {_one_line(error)}") from None
    module, example = made if isinstance(made, tuple) else (made, None)
    if not isinstance(module, nn.Module):
        raise ModelError(f"'{spec}' gave a {type(module).__name__}, not a torch.nn.Module.")
    if example is None:
        if input_shape is None:
            raise ModelError(f"'{spec}' gives no example input: pass an input shape.")
        example = example_input((tuple(input_shape),), seed)
    return module.eval(), example


def _import(where: str):
    """The module of a model spec: a ``.py`` file, or a module importable from the current
    folder or the path; whatever importing it raises is named in one line."""
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ModelError(f"No model file '{where}'.")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)
            spec.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())  # as `python -m` would find it (last: no shadowing)
        return importlib.import_module(where)
    except ImportError as error:
        raise ModelError(f"Cannot import '{where}': {error}") from None
    except ModelError:
        raise
    except Exception as error:  # the user's module failed while importing
        raise ModelError(f"Importing '{where}' raised {_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    """``Kind: message`` on one line, with the file and line of a syntax error."""
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} ({error.filename}, line {error.lineno})"
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
