"""Map a torch.fx node to an ``OpKind`` with its window geometry and attributes.

The tables name torch operations by their semantics (a ReLU is element-wise wherever it
appears); nothing here knows any model. Anything not listed is ``OTHER``, which is always
safe: a planner then treats the layer as needing its whole inputs. A module is classified
by its class only when its ``forward`` is torch's own (a subclass that pads or activates
in its own ``forward``, such as a "same"-padding convolution, is ``OTHER``); ATen ops from
``torch.export`` are read as the torch functions whose arguments they share.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from edgeweave.graph.layer import Geometry, OpKind

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh, nn.GELU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.Softsign,
    nn.PReLU, nn.Threshold, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout, nn.Identity, nn.modules.batchnorm._BatchNorm,
)
_ELEMENTWISE_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.iadd,
    operator.imul, torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.abs,
    torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.clamp, torch.maximum, torch.minimum,
    F.relu, F.relu6, F.leaky_relu, F.silu, F.sigmoid, F.tanh, F.hardswish, F.hardsigmoid,
    F.hardtanh, F.gelu, F.elu, F.mish, F.softplus, F.dropout, torch.clone,
}
# batch norm with running statistics, by where its statistics, weight and bias arguments are
BATCH_NORM_ARGS = {F.batch_norm: {"mean": 1, "var": 2, "weight": 3, "bias": 4, "training": 5,
                                  "eps": 7},
                   torch.ops.aten.batch_norm.default: {"weight": 1, "bias": 2, "mean": 3,
                                                       "var": 4, "training": 5, "eps": 7}}
_ELEMENTWISE_METHODS = {
    "add", "sub", "mul", "div", "neg", "abs", "relu", "sigmoid", "tanh", "exp", "clamp",
    "contiguous", "add_", "mul_", "relu_", "clone", "float",
}
_ATEN_AS_FUNCTION = {  # ATen op name -> the torch function with the same leading arguments
    **{name: getattr(torch, name) for name in (
        "add", "sub", "mul", "div", "neg", "abs", "relu", "sigmoid", "tanh", "exp", "clamp",
        "maximum", "minimum", "flatten", "reshape", "squeeze", "unsqueeze", "cat", "concat",
        "concatenate")},
    **{f"{name}_": getattr(torch, name) for name in ("add", "sub", "mul", "div", "relu",
                                                     "sigmoid", "tanh", "clamp")},
    **{name: getattr(F, name) for name in (
        "conv1d", "conv2d", "conv3d", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d",
        "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
        "adaptive_avg_pool3d", "linear", "relu6", "leaky_relu", "silu", "hardswish",
        "hardsigmoid", "hardtanh", "gelu", "elu", "mish", "softplus", "dropout")},
    **{f"{name}_": getattr(F, name) for name in ("leaky_relu", "silu", "hardswish",
                                                 "hardsigmoid", "hardtanh", "elu")},
    "view": torch.reshape, "clone": torch.clone, "contiguous": torch.clone,
    "alias": torch.clone, "detach": torch.clone,
}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
_CONCAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_CONV_FUNCTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_POOL_FUNCTIONS = {F.max_pool1d: ("max", 1), F.max_pool2d: ("max", 2), F.max_pool3d: ("max", 3),
                   F.avg_pool1d: ("avg", 1), F.avg_pool2d: ("avg", 2), F.avg_pool3d: ("avg", 3)}
_ADAPTIVE_FUNCTIONS = {F.adaptive_avg_pool1d: "avg", F.adaptive_avg_pool2d: "avg",
                       F.adaptive_avg_pool3d: "avg", F.adaptive_max_pool2d: "max"}

Classified = tuple[OpKind, Geometry | None, dict[str, Any]]


def classify(node: fx.Node, root: nn.Module, input_shapes: list[tuple[int, ...]],
             output_shape: tuple[int, ...] | None) -> Classified:
    """The kind, geometry and attributes of a call node, read from its module or arguments."""
    if output_shape is None:
        return OpKind.OTHER, None, {}
    if node.op == "call_module":
        return _classify_module(root.get_submodule(node.target), input_shapes, output_shape)
    if node.op == "call_method":
        if node.target in _ELEMENTWISE_METHODS:
            return OpKind.ELEMENTWISE, None, {"op": node.target}
        if node.target in _RESHAPE_METHODS:
            return OpKind.RESHAPE, None, {}
        return OpKind.OTHER, None, {}
    if node.op == "call_function":
        return _classify_function(node, input_shapes, output_shape)
    return OpKind.OTHER, None, {}


_IN_PLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv,
                       operator.iand, operator.ior}


def mutates_input(node: fx.Node, root: nn.Module) -> bool:
    """Whether the node writes into one of its inputs (``relu_``, ``+=``, an
    ``inplace=True`` module or function). The region kernels then run it on copies: a
    piece may be a view of a tensor that overlapping pieces, or other layers, still read."""
    if node.op == "call_module":
        return bool(getattr(root.get_submodule(node.target), "inplace", False))
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.startswith("_")
    if node.op != "call_function":
        return False
    if isinstance(node.target, torch._ops.OpOverload):
        return any(a.alias_info is not None and a.alias_info.is_write
                   for a in node.target._schema.arguments)
    name = getattr(node.target, "__name__", "")
    return (node.target in _IN_PLACE_OPERATORS or node.kwargs.get("inplace") is True
            or (name.endswith("_") and not name.startswith("_")))


def _classify_module(module: nn.Module, input_shapes, output_shape) -> Classified:
    name = type(module).__name__
    if not type(module).forward.__module__.startswith("torch.nn."):
        return OpKind.OTHER, None, {"op": name}  # its own forward: its class says nothing
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and (
            module.training or module.running_mean is None):
        return OpKind.OTHER, None, {"op": name}  # normalises by the batch's own statistics
    if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        spatial = len(module.kernel_size)
        padding = _conv_padding(module.padding, module.kernel_size, module.dilation)
        if padding is None or module.padding_mode != "zeros":
            return OpKind.OTHER, None, {"op": name}
        geometry = Geometry(tuple(module.kernel_size), tuple(module.stride), padding,
                            tuple(module.dilation), module.groups)
        return OpKind.CONV, _fit(geometry, spatial), {"op": name}
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)) and not module.return_indices:
        spatial = len(output_shape) - 2
        geometry = _pool_geometry(spatial, module.kernel_size, module.stride, module.padding,
                                  module.dilation, module.ceil_mode)
        return OpKind.POOL, geometry, {"op": name, "mode": "max"}
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        spatial = len(output_shape) - 2
        geometry = _pool_geometry(spatial, module.kernel_size, module.stride, module.padding, 1,
                                  module.ceil_mode)
        if getattr(module, "divisor_override", None):
            return OpKind.OTHER, None, {"op": name}
        return OpKind.POOL, geometry, {"op": name, "mode": "avg",
                                       "count_include_pad": module.count_include_pad}
    if isinstance(module, nn.modules.pooling._AdaptiveAvgPoolNd):
        return OpKind.ADAPTIVE_POOL, None, {"op": name, "mode": "avg",
                                            "output_size": tuple(output_shape[2:])}
    if isinstance(module, nn.modules.pooling._AdaptiveMaxPoolNd) and not module.return_indices:
        return OpKind.ADAPTIVE_POOL, None, {"op": name, "mode": "max",
                                            "output_size": tuple(output_shape[2:])}
    if isinstance(module, nn.Linear):
        return OpKind.LINEAR, None, {"op": name}
    if isinstance(module, _ELEMENTWISE_MODULES):
        return OpKind.ELEMENTWISE, None, {"op": name}
    if isinstance(module, nn.Flatten):
        return OpKind.RESHAPE, None, {"op": name}
    if isinstance(module, nn.Upsample):
        return _upsample(module.mode, input_shapes, output_shape, module.align_corners)
    return OpKind.OTHER, None, {"op": name}


def _classify_function(node: fx.Node, input_shapes, output_shape) -> Classified:
    target, name = node.target, getattr(node.target, "__name__", str(node.target))
    if isinstance(target, torch._ops.OpOverload):
        target = _ATEN_AS_FUNCTION.get(target.overloadpacket.__name__, target)
    if target in BATCH_NORM_ARGS:
        return _batch_norm_function(node, target, name)
    if target in _ELEMENTWISE_FUNCTIONS:
        return OpKind.ELEMENTWISE, None, {"op": name}
    if target in _RESHAPE_FUNCTIONS:
        return OpKind.RESHAPE, None, {"op": name}
    if target in _CONCAT_FUNCTIONS:
        dim = _arg(node, 1, "dim", 0) % len(output_shape)
        pieces = _arg(node, 0, "tensors", ())
        if not all(isinstance(p, fx.Node) and "shape" in p.meta for p in pieces):
            return OpKind.OTHER, None, {"op": name}
        # the arguments in order (a tensor may appear twice) and their sizes along dim
        return OpKind.CONCAT, None, {"op": name, "dim": dim,
                                     "pieces": tuple(p.name for p in pieces),
                                     "sizes": tuple(p.meta["shape"][dim] for p in pieces)}
    if target is F.linear:
        return OpKind.LINEAR, None, {"op": name}
    if target is F.interpolate:
        return _upsample(_arg(node, 4, "mode", "nearest"), input_shapes, output_shape,
                         _arg(node, 5, "align_corners", None))
    if target in _CONV_FUNCTIONS:
        return _conv_function(node, _CONV_FUNCTIONS[target], name)
    if target in _POOL_FUNCTIONS:
        return _pool_function(node, *_POOL_FUNCTIONS[target], name)
    size = _arg(node, 1, "output_size", None)
    if target in _ADAPTIVE_FUNCTIONS and isinstance(size, (int, tuple, list)):
        return OpKind.ADAPTIVE_POOL, None, {"op": name, "mode": _ADAPTIVE_FUNCTIONS[target],
                                            "output_size": tuple(output_shape[2:])}
    return OpKind.OTHER, None, {"op": name}


def _batch_norm_function(node: fx.Node, target, name: str) -> Classified:
    """Element-wise when normalising by stored statistics (parameters, not computed)."""
    where = BATCH_NORM_ARGS[target]
    stored = all(isinstance(_arg(node, where[k], k, None), fx.Node)
                 and _arg(node, where[k], k, None).op == "get_attr" for k in ("mean", "var"))
    if not stored or _arg(node, where["training"], "training", False) is not False:
        return OpKind.OTHER, None, {"op": name}
    return OpKind.ELEMENTWISE, None, {"op": "batch_norm"}


def _conv_function(node: fx.Node, spatial: int, name: str) -> Classified:
    weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
    shape = weight.meta.get("shape") if isinstance(weight, fx.Node) else None
    padding = _arg(node, 4, "padding", 0)
    if shape is None:
        return OpKind.OTHER, None, {"op": name}
    kernel = tuple(shape[2:])
    dilation = _tuple(_arg(node, 5, "dilation", 1), spatial)
    padding = _conv_padding(padding, kernel, dilation)
    if padding is None:
        return OpKind.OTHER, None, {"op": name}
    geometry = Geometry(kernel, _tuple(_arg(node, 3, "stride", 1), spatial),
                        _tuple(padding, spatial), dilation, int(_arg(node, 6, "groups", 1)))
    return OpKind.CONV, geometry, {"op": name}


def _pool_function(node: fx.Node, mode: str, spatial: int, name: str) -> Classified:
    kernel = _arg(node, 1, "kernel_size", None)
    stride = _arg(node, 2, "stride", None)
    padding = _arg(node, 3, "padding", 0)
    if mode == "max":
        if _arg(node, 6, "return_indices", False):
            return OpKind.OTHER, None, {"op": name}
        dilation, ceil = _arg(node, 4, "dilation", 1), _arg(node, 5, "ceil_mode", False)
        attrs = {"op": name, "mode": mode}
    else:
        if _arg(node, 6, "divisor_override", None):
            return OpKind.OTHER, None, {"op": name}
        dilation, ceil = 1, _arg(node, 4, "ceil_mode", False)
        attrs = {"op": name, "mode": mode,
                 "count_include_pad": _arg(node, 5, "count_include_pad", True)}
    geometry = _pool_geometry(spatial, kernel, stride, padding, dilation, ceil)
    return OpKind.POOL, geometry, attrs


def _upsample(mode: str, input_shapes, output_shape, align_corners) -> Classified:
    scale = tuple(o / i for o, i in zip(output_shape[2:], input_shapes[0][2:]))
    attrs = {"op": "upsample", "mode": mode, "scale": scale, "align_corners": align_corners}
    return OpKind.UPSAMPLE, None, attrs


def _pool_geometry(spatial, kernel, stride, padding, dilation, ceil_mode) -> Geometry:
    kernel_t = _tuple(kernel, spatial)
    stride_t = kernel_t if stride is None or stride == [] else _tuple(stride, spatial)
    return Geometry(kernel_t, stride_t, _tuple(padding, spatial), _tuple(dilation, spatial),
                    1, bool(ceil_mode))


def _conv_padding(padding, kernel, dilation) -> tuple[int, ...] | None:
    """Symmetric padding as a tuple; None where 'same' would pad unevenly."""
    if padding == "valid":
        return (0,) * len(kernel)
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, _tuple(dilation, len(kernel)))]
        return None if any(t % 2 for t in total) else tuple(t // 2 for t in total)
    return _tuple(padding, len(kernel))


def _fit(geometry: Geometry, spatial: int) -> Geometry:
    return Geometry(*(_tuple(v, spatial) for v in (geometry.kernel, geometry.stride,
                                                    geometry.padding, geometry.dilation)),
                    geometry.groups, geometry.ceil_mode)


def _tuple(value, length: int) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value) if len(value) == length else (int(value[0]),) * length
    return (int(value),) * length


def _arg(node: fx.Node, index: int, name: str, default):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)
