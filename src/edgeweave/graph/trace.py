"""``trace``: from an ``nn.Module`` and an example input to a ``LayerGraph``.

Two ways to capture the graph: torch.fx traces the module symbolically (layers keep their
modules' names and classes), and ``torch.export`` captures what fx cannot — control flow
on shapes, item assignment, iteration, "same" padding computed in ``forward`` — as ATen
ops on parameters. ``method="auto"`` takes fx where it works and export where it does not.
Forward arguments the example does not give keep their defaults. One run of the traced
graph on the example records every node's output shape, dtype and FLOPs (torch's
``FlopCounterMode`` for convolutions, linear layers and matrix products, a multiply-add
counting as 2 FLOPs; one FLOP per output element for element-wise ops, two for batch
norm, one per window element for pools). Values that only depend on shapes
(``x.size(0)``) are folded into constants, so the graph that remains computes tensors
only; it is valid for the example's input shapes, which a plan is made for anyway.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten, tree_leaves, tree_map
from torch.utils.flop_counter import FlopCounterMode

from edgeweave.errors import (ExampleInputError, ModelError, UnknownNameError,
                              UntraceableModelError)
from edgeweave.graph.call import Call, bind
from edgeweave.graph.classify import classify, mutates_input
from edgeweave.graph.layer import Layer, OpKind
from edgeweave.graph.layer_graph import LayerGraph
from edgeweave.graph.mutation import HiddenWrite, WriteWatcher
from edgeweave.graph.untouched import left_as_found

LeafSpec = str | type[nn.Module]
METHODS = ("auto", "fx", "export")


def trace(module: nn.Module, example: Any, leaf_modules: Iterable[LeafSpec] = (),
          name: str | None = None, method: str = "auto") -> LayerGraph:
    """Trace ``module`` on ``example`` into a ``LayerGraph``.

    ``example`` is one tensor, a tuple (the first forward arguments; the rest keep their
    defaults) or a dict of forward arguments by name (keyword inputs). Tensors become the
    graph's inputs; other values (a flag, a count) are fixed in the graph as given
    (``graph.fixed``). ``leaf_modules`` lists submodules fx keeps whole, by qualified
    name (``"layer1.0"``) or by class. ``method`` is ``"fx"``, ``"export"`` (torch.export)
    or ``"auto"``: fx, and torch.export where fx cannot trace the model. ``name`` names the
    graph. The module is left as it was found: what capturing it cached or wrote is undone.

    >>> import torch
    >>> g = trace(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()),
    ...           torch.zeros(1, 3, 8, 8))
    >>> [layer.kind.value for layer in g]
    ['input', 'conv', 'elementwise']
    """
    if not isinstance(module, nn.Module):
        raise ModelError(f"trace() needs a torch.nn.Module, got {type(module).__name__}.")
    if method not in METHODS:
        raise UnknownNameError(f"Unknown trace method '{method}'; use one of "
                               f"{', '.join(METHODS)}.")
    call = bind(module, example)
    with left_as_found(module):  # capture runs the model, which may cache what it saw
        graph_module, records, captured_by = _capture(module, call, tuple(leaf_modules), method)
    _fold_shape_constants(graph_module, records)
    _reshapes_for_views(graph_module)
    graph = _build(graph_module, records, name or type(module).__name__)
    return dataclasses.replace(graph, captured_by=captured_by, arguments=tuple(call.given),
                               fixed=call.fixed)


def _capture(module: nn.Module, call: Call, leaves: tuple[LeafSpec, ...], method: str
             ) -> tuple[fx.GraphModule, dict, str]:
    """The graph by ``method``, its profile and the method that made it. ``auto`` checks
    fx's graph against the model itself: fx records one path through code that tests what
    a traced value is, and such a graph can fail on the example or compute something else;
    it also cannot show a write into a view as an edge. export's then."""
    if method == "export":
        return *_exported(module, call), "export"
    if method == "fx":
        run = _profiled(_symbolic_trace(module, leaves, call), call)
        if run.hidden:
            raise UntraceableModelError(
                f"torch.fx's graph hides a write: {run.hidden[0]}. Trace with method='export' "
                "(or 'auto'), which makes the write an edge of the graph.")
        return _returning(run.module, _eager(module, call)), run.records, "fx"
    try:
        run = _profiled(_symbolic_trace(module, leaves, call), call)
    except UntraceableModelError as error:
        why = str(error)
    except ExampleInputError as error:
        try:
            _eager(module, call)
        except ExampleInputError:
            raise error from None  # the example does not fit the model: fx's names the layer
        why = str(error)
    else:
        if run.hidden:
            why = f"torch.fx's graph hides a write: {run.hidden[0]}."
        else:
            expected = _eager(module, call)
            if _same(run.output, expected):
                return _returning(run.module, expected), run.records, "fx"
            why = ("torch.fx traced a graph whose output differs from the model's (code that "
                   "branches on what a traced value is).")
    try:
        return *_exported(module, call), "export"
    except UntraceableModelError as export_error:
        raise UntraceableModelError(f"{why} {export_error}") from None


def _returning(graph_module: fx.GraphModule, output: Any) -> fx.GraphModule:
    """The graph module, noting the structure of what the model returns (fx keeps plain
    dicts and lists of its own, and drops a dict subclass's type)."""
    graph_module.meta["output_spec"] = tree_flatten(output)[1]
    return graph_module


def _exported(module: nn.Module, call: Call) -> tuple[fx.GraphModule, dict]:
    """export's graph and its profile; functionalised when a layer writes into memory that
    a later layer reads through another node (a write into a view, say)."""
    program = _export(module, call)
    run = _profiled(_unlifted(program, call.fixed), call)
    if run.hidden:
        run = _profiled(_functional(program, call.fixed), call)
        if run.hidden:
            raise UntraceableModelError(
                f"{type(module).__name__} writes into a tensor in a way edgeweave cannot make "
                f"explicit: {run.hidden[0]}.")
    return run.module, run.records


def _eager(module: nn.Module, call: Call) -> Any:
    try:
        with torch.no_grad():
            return call(module)
    except Exception as error:
        raise ExampleInputError(f"Running {type(module).__name__} on the example failed: "
                                f"{type(error).__name__}: {error}") from None


def _same(output: Any, expected: Any) -> bool:
    ours, theirs = tree_leaves(output), tree_leaves(expected)
    return len(ours) == len(theirs) and all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-5) if isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor) and a.shape == b.shape else a == b
        for a, b in zip(ours, theirs))


def _profiled(graph_module: fx.GraphModule, call: Call) -> _Profiler:
    """The graph run once on the example: its records, output and hidden writes."""
    for node in graph_module.graph.nodes:
        node.type = None  # an annotation written as a string cannot be pickled to a worker
    profiler = _Profiler(graph_module)
    profiler.profile(tuple(call.given[node.target] for node in graph_module.graph.nodes
                           if node.op == "placeholder"))
    return profiler


class _Tracer(fx.Tracer):
    """An fx tracer that keeps the named leaves whole and remembers where tracing failed."""

    def __init__(self, leaves: tuple[LeafSpec, ...] = ()) -> None:  # () when unpickling
        super().__init__()
        self.leaf_names = {leaf for leaf in leaves if isinstance(leaf, str)}
        self.leaf_types = tuple(leaf for leaf in leaves if isinstance(leaf, type))
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (qualname in self.leaf_names or isinstance(m, self.leaf_types)
                or super().is_leaf_module(m, qualname))

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module sees the error first
                self.failed_in = self.path_of_module(m)
            raise


def _symbolic_trace(module: nn.Module, leaves: tuple[LeafSpec, ...], call: Call
                    ) -> fx.GraphModule:
    beyond = [name for name in call.given if name not in call.parameters]
    if beyond:
        raise UntraceableModelError(
            f"torch.fx takes a forward's *args and **kwargs as one value each, and the "
            f"example gives {', '.join(beyond)} through them.")
    tracer = _Tracer(leaves)
    concrete = {**call.defaults, **call.fixed}
    try:
        graph = tracer.trace(module, concrete_args=concrete or None)
    except Exception as error:
        where = tracer.failed_in
        owner = type(module.get_submodule(where)).__name__ if where else type(module).__name__
        place = f"module '{where}' ({owner})" if where else f"the forward of {owner} itself"
        fix = (f"mark it as a leaf: trace(model, example, leaf_modules=['{where}'])" if where
               else "move the untraceable code into a submodule and mark that as a leaf")
        raise UntraceableModelError(
            f"torch.fx cannot trace {place}: {type(error).__name__}: {error}. "
            f"To keep it whole, {fix}.") from None
    _drop_specialised(graph, call.parameters, concrete)
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


def _drop_specialised(graph: fx.Graph, parameters: Sequence[str], concrete: dict[str, Any]
                      ) -> None:
    """Remove the placeholders fx made for the ``concrete`` arguments (fixed values and
    defaults: baked in the graph) and the assertions on them. fx makes one placeholder per
    parameter, in order, renaming those it specialises."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for placeholder, parameter in zip(placeholders, parameters):
        if parameter not in concrete:
            placeholder.target = parameter  # the example's name for it
            continue
        checks, frontier = [], [placeholder]
        while frontier:
            frontier = [u for node in frontier for u in node.users if u not in checks]
            checks += frontier
        for node in reversed(checks):
            graph.erase_node(node)
        graph.erase_node(placeholder)


def _export(module: nn.Module, call: Call) -> torch.export.ExportedProgram:
    """The model captured by ``torch.export`` as ATen ops."""
    try:
        return torch.export.export(module, call.args, call.kwargs, strict=False)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UntraceableModelError(
            f"torch.export cannot capture {type(module).__name__} either: "
            f"{type(error).__name__}: {first[:300]}. Keep the part it stops at out of the "
            "model, or trace with method='fx' and mark that module as a leaf.") from None


def _functional(program: torch.export.ExportedProgram, fixed: Collection[str]) -> fx.GraphModule:
    """``program`` functionalised: every write into a view becomes an op whose output the
    later readers take (``slice_scatter``, ``index_put``…). Writes back into the model's
    inputs and buffers are dropped: a plan computes outputs, it does not change its
    caller's tensors or the model's state."""
    try:
        with warnings.catch_warnings():  # torch's own deprecation notes on its tree specs
            warnings.simplefilter("ignore", FutureWarning)
            graph_module = _unlifted(program.run_decompositions({}), fixed)
    except Exception as error:
        raise UntraceableModelError(
            f"torch.export cannot make the in-place writes of the model explicit: "
            f"{type(error).__name__}: {str(error).strip()[:300]}") from None
    graph = graph_module.graph
    for node in reversed(list(graph.nodes)):
        if (mutates_input(node, graph_module) and not node.users and node.args
                and isinstance(node.args[0], fx.Node)
                and node.args[0].op in ("placeholder", "get_attr")):
            graph.erase_node(node)
    graph.lint()
    graph_module.recompile()
    return graph_module


def _unlifted(program: torch.export.ExportedProgram, fixed: Collection[str]) -> fx.GraphModule:
    """A graph of ``program``'s ATen ops that reads its parameters as attributes and
    returns what the model's forward returns; the inputs of values ``fixed`` as given (not
    tensors: export specialised the graph to them) are dropped."""
    graph_module = program.module()
    graph = graph_module.graph
    for node in list(graph.nodes):  # export's input checks: the plan fixes the shapes anyway
        if node.op == "call_module" and not node.users:
            graph.erase_node(node)
    for node in list(graph.nodes):
        if node.op == "placeholder" and node.target in fixed and not node.users:
            graph.erase_node(node)
    output = next(n for n in graph.nodes if n.op == "output")
    spec = graph._codegen.pytree_info.out_spec  # export's module rebuilds its outputs
    graph._codegen = fx.graph.CodeGen()
    output.args = (_structure(list(output.args[0]), spec),)
    graph.lint()
    # a plain module of what the graph reads: export's own carries hooks and a guard
    # module that do not pickle, and worker processes receive the graph pickled
    graph._tracer_cls, graph._tracer_extras = None, {}  # unpickling re-traces with fx's own
    plain = fx.GraphModule(graph_module, graph)
    plain.meta["output_spec"] = spec
    return plain


def _structure(leaves: list, spec) -> Any:
    """``leaves`` in the output's structure, tuples, lists and dicts (any other container,
    a model-output class, say, as the dict of its fields)."""
    if spec.is_leaf():
        return leaves.pop(0)
    children = [_structure(leaves, child) for child in spec.children()]
    if spec.type in (tuple, list):
        return spec.type(children)
    keys = spec.context
    if isinstance(keys, (list, tuple)) and len(keys) == len(children):
        return dict(zip(keys, children))
    return tuple(children)


class _Profiler(fx.Interpreter):
    """Runs the graph once and records each node's value summary and FLOPs."""

    def __init__(self, graph_module: fx.GraphModule) -> None:
        super().__init__(graph_module, garbage_collect_values=True)
        self.extra_traceback = False  # our error names the layer; fx's note would add lines
        self.records: dict[str, dict[str, Any]] = {}
        self.writes = WriteWatcher(graph_module.graph)

    def profile(self, inputs: tuple[torch.Tensor, ...]) -> None:
        """Fill ``records`` (each node's), ``output`` (the graph's) and ``hidden`` (writes
        a split run would lose)."""
        with torch.no_grad():
            self.output = self.run(*inputs)

    @property
    def hidden(self) -> list[HiddenWrite]:
        """Reads of memory an earlier layer wrote, through a node that does not show it."""
        return self.writes.hidden

    def run_node(self, n: fx.Node) -> Any:
        watched = self.writes.before(n, {p: self.env[p] for p in n.all_input_nodes})
        try:
            with FlopCounterMode(display=False) as counter:
                value = super().run_node(n)
        except Exception as error:
            raise ExampleInputError(
                f"Running the model on the example failed at layer '{n.name}' ({n.target}): "
                f"{type(error).__name__}: {error}") from None
        self.writes.after(n, watched)
        record: dict[str, Any] = {"flops": counter.get_total_flops()}
        if isinstance(value, torch.Tensor):
            record.update(shape=tuple(value.shape), dtype=str(value.dtype).removeprefix("torch."))
            n.meta["shape"] = record["shape"]
        tensors = [leaf for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor)]
        record["bytes"] = sum(t.numel() * t.element_size() for t in tensors)
        if not tensors:  # a value computed from shapes only, to fold into a constant
            record["constant"] = tree_map(lambda v: tuple(v) if isinstance(v, torch.Size) else v,
                                          value)
        self.records[n.name] = record
        return value


def _fold_shape_constants(graph_module: fx.GraphModule, records: dict[str, dict]) -> None:
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op.startswith("call") and "constant" in records[node.name]:
            constant = records[node.name]["constant"]
            for user in list(node.users):
                user.args = fx.node.map_arg(user.args, lambda a: constant if a is node else a)
                user.kwargs = fx.node.map_arg(user.kwargs, lambda a: constant if a is node else a)
            graph.erase_node(node)
    graph.lint()
    graph_module.recompile()


_VIEWS = (torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default)


def _reshapes_for_views(graph_module: fx.GraphModule) -> None:
    """Every ``view`` to a shape becomes a ``reshape``: ``view`` needs its input in a layout
    a split run does not keep (a tensor that travelled between devices arrives contiguous,
    where the model's was a transposed one that a view could reshape: BART's attention
    output), and ``reshape`` is a view where the layout allows it and a copy where not —
    the same values. Safe once no write reaches a reader through a view (``WriteWatcher``)."""
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target in _VIEWS:
            node.target = torch.ops.aten.reshape.default
        elif (node.op == "call_method" and node.target == "view"
              and not any(isinstance(a, torch.dtype) for a in node.args[1:])):
            node.target = "reshape"
    graph_module.recompile()


def _build(graph_module: fx.GraphModule, records: dict[str, dict], name: str) -> LayerGraph:
    param_sizes = {key: t.numel() * t.element_size()
                   for key, t in graph_module.state_dict(keep_vars=True).items()}
    for node in graph_module.graph.nodes:  # plain tensor attributes, not in the state dict
        if node.op == "get_attr" and node.target not in param_sizes:
            value = functools.reduce(getattr, node.target.split("."), graph_module)
            if isinstance(value, torch.Tensor):  # not a subgraph of a higher-order op
                param_sizes[node.target] = value.numel() * value.element_size()
    layers: list[Layer] = []
    outputs: tuple[str, ...] = ()
    for node in graph_module.graph.nodes:
        if node.op == "output":
            outputs = tuple(n.name for n in node.all_input_nodes)
        elif node.op != "get_attr":
            layers.append(_layer(node, graph_module, records, param_sizes))
    inputs = tuple(layer.name for layer in layers if layer.kind is OpKind.INPUT)
    return LayerGraph(tuple(layers), inputs, outputs, param_sizes, name, graph_module,
                      output_spec=graph_module.meta.pop("output_spec", None))


def _layer(node: fx.Node, root: nn.Module, records: dict[str, dict],
           param_sizes: dict[str, int]) -> Layer:
    record = records[node.name]
    producers = [n for n in node.all_input_nodes if n.op != "get_attr"]
    input_shapes = [records[n.name].get("shape", ()) for n in producers]
    output_shape = record.get("shape")
    params = _params_of(node, root, param_sizes)
    if node.op == "placeholder":
        kind, geometry, attrs = OpKind.INPUT, None, {}
        target = str(node.target)
    else:
        kind, geometry, attrs = classify(node, root, input_shapes, output_shape)
        if mutates_input(node, root):
            attrs = {**attrs, "in_place": True}
        target = node.target if isinstance(node.target, str) else _qualname(node.target)
    flops = record["flops"] or _elementwise_flops(kind, attrs, geometry, input_shapes,
                                                  output_shape)
    return Layer(
        name=node.name, kind=kind, target=target, inputs=tuple(n.name for n in producers),
        input_shapes=tuple(input_shapes), output_shape=output_shape,
        dtype=record.get("dtype", "float32"), flops=int(flops),
        param_bytes=sum(param_sizes[p] for p in params), output_bytes=record["bytes"],
        params=params, geometry=geometry, attrs=attrs,
    )


def _params_of(node: fx.Node, root: nn.Module, param_sizes: dict[str, int]) -> tuple[str, ...]:
    if node.op == "call_module":
        prefix = f"{node.target}."
        return tuple(prefix + key for key in root.get_submodule(node.target).state_dict())
    return tuple(str(n.target) for n in node.all_input_nodes  # not a higher-order op's
                 if n.op == "get_attr" and str(n.target) in param_sizes)  # subgraph


def _elementwise_flops(kind: OpKind, attrs, geometry, input_shapes, output_shape) -> int:
    """FLOPs of ops that FlopCounterMode does not count (it counts matrix work only)."""
    if output_shape is None:
        return 0
    out = math.prod(output_shape)
    if kind is OpKind.ELEMENTWISE:
        op = str(attrs.get("op", ""))
        return 2 * out if "BatchNorm" in op or op == "batch_norm" else out
    if kind is OpKind.POOL:
        return out * math.prod(geometry.kernel)
    if kind is OpKind.ADAPTIVE_POOL:
        return math.prod(input_shapes[0]) if input_shapes else out
    if kind is OpKind.UPSAMPLE:
        return out
    return 0


def _qualname(target) -> str:
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", None) or repr(target)
    return f"{module}.{name}" if module and module != "builtins" else name
