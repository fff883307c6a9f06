"""``LayerGraph``: the DAG of a traced model's layers, with the queries planners need.

Layers are kept in a topological order (torch.fx's node order). The graph also holds the
traced ``fx.GraphModule``, so any subset of layers can be executed on given tensors: a
partitioned execution can then be compared with the whole model.

Structure follows seed 001 (Wang, Duan and Wu): a *line* DNN is a chain; a *multi-path*
DNN forks once and joins once, its paths disjoint; anything else is a *general DAG*.
Several inputs or outputs count as a fork from a virtual source or a join into a
virtual sink. A *cut point* is a layer that every input-to-output path passes through,
so cutting after it leaves one tensor crossing the cut (seed 002's notion).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib
import pickle
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import torch
from torch import fx
from torch.fx.node import _get_qualified_name
from torch.utils._pytree import TreeSpec, tree_leaves, tree_unflatten, treespec_leaf

from edgeweave.errors import ExampleInputError, GraphError
from edgeweave.graph.layer import Layer

if TYPE_CHECKING:
    import networkx as nx

_SOURCE, _SINK = "<source>", "<sink>"


class Structure(StrEnum):
    """Seed 001's three classes of DNN graphs."""

    LINE = "line"
    MULTI_PATH = "multi-path"
    DAG = "dag"


@dataclass(frozen=True, eq=False)
class LayerGraph:
    """The layers of a model in topological order, its inputs, outputs and parameters.

    ``param_sizes`` maps every parameter or buffer name to its size in bytes; ``module`` is
    the traced ``fx.GraphModule`` that executes the layers; ``captured_by`` the capture
    method that made it (``"fx"`` or ``"export"``); ``output_spec`` the structure of what the
    model returns; ``arguments`` the forward arguments the example gave, in order (the
    tensors among them are ``inputs``), and ``fixed`` the others' values, fixed in the graph.
    """

    layers: tuple[Layer, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    param_sizes: Mapping[str, int]
    name: str
    module: fx.GraphModule = field(repr=False)
    captured_by: str = "fx"
    output_spec: Any = field(default=None, repr=False)  # a pytree spec of what it returns
    arguments: tuple[str, ...] = ()  # the forward arguments as traced, in order
    fixed: Mapping[str, Any] = field(default_factory=dict)  # non-tensor ones, fixed

    def __getstate__(self) -> dict[str, Any]:
        # pickled for worker processes: the fields only, not the cached indexes; the module
        # as its nodes, not as fx pickles it (re-tracing its generated code, which can
        # rename nodes, and drop those whose values the code computes without a trace)
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        spec = _spec_state(self.output_spec) if self.output_spec is not None else None
        try:  # the model's output classes; workers do not assemble outputs, so may lack them
            pickle.dumps(spec)
        except Exception:  # noqa: BLE001 - a class pickle cannot name (made in a function)
            spec = None
        return {**state, "module": _graph_state(self.module), "output_spec": spec}

    def __setstate__(self, state: dict[str, Any]) -> None:
        spec = state["output_spec"]
        for name, value in {**state, "module": _graph_module(*state["module"]),
                            "output_spec": None if spec is None else _spec(spec)}.items():
            object.__setattr__(self, name, value)

    # -- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> Layer:
        try:
            return self.layers[self._index[name]]
        except KeyError:
            raise GraphError(f"Graph '{self.name}' has no layer '{name}'.") from None

    def __repr__(self) -> str:
        return (f"LayerGraph('{self.name}', {len(self)} layers, {self.structure}, "
                f"{self.flops / 1e9:.2f} GFLOP, {self.param_bytes / 1e6:.1f} MB parameters)")

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {layer.name: i for i, layer in enumerate(self.layers)}

    @functools.cached_property
    def _interpreter(self) -> fx.Interpreter:
        return fx.Interpreter(self.module, garbage_collect_values=False)

    @functools.cached_property
    def _nodes(self) -> dict[str, fx.Node]:
        return {node.name: node for node in self.module.graph.nodes}

    @functools.cached_property
    def _successors(self) -> dict[str, tuple[str, ...]]:
        users: dict[str, list[str]] = {layer.name: [] for layer in self.layers}
        for layer in self.layers:
            for producer in layer.inputs:
                users[producer].append(layer.name)
        return {name: tuple(names) for name, names in users.items()}

    def node(self, name: str) -> fx.Node:
        """The torch.fx node that computes layer ``name``."""
        self[name]  # noqa: B018 - raises a GraphError for an unknown name
        return self._nodes[name]

    def index_of(self, name: str) -> int:
        """Position of a layer in the topological order."""
        self[name]  # noqa: B018 - raises a GraphError for an unknown name
        return self._index[name]

    def topological_order(self) -> tuple[str, ...]:
        """Layer names, every layer after all its inputs."""
        return tuple(layer.name for layer in self.layers)

    def predecessors(self, name: str) -> tuple[str, ...]:
        """The layers whose outputs ``name`` reads."""
        return self[name].inputs

    def successors(self, name: str) -> tuple[str, ...]:
        """The layers that read the output of ``name``."""
        self[name]  # noqa: B018 - raises a GraphError for an unknown name
        return self._successors[name]

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of the layers' names, kinds and shapes: equal graphs, equal prints."""
        text = ";".join(f"{l.name},{l.kind},{l.output_shape},{l.inputs}" for l in self.layers)
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    # -- totals -------------------------------------------------------------------------
    @property
    def flops(self) -> int:
        """FLOPs of one inference (a multiply-add counts as 2)."""
        return sum(layer.flops for layer in self.layers)

    @property
    def param_bytes(self) -> int:
        """Bytes of all parameters and buffers, each counted once even when shared."""
        return sum(self.param_sizes.values())

    @property
    def activation_bytes(self) -> int:
        """Bytes of all layer outputs of one inference."""
        return sum(layer.output_bytes for layer in self.layers)

    def with_weights_of(self, layers: Iterable[str]) -> LayerGraph:
        """This graph holding only the parameters and buffers ``layers`` use; the others
        become storage-less ``meta`` tensors, so pickling it to a device carries only what
        that device computes. Kept tensors are shared with this graph, not copied."""
        keep = {param for name in layers for param in self[name].params}
        state = dict(self.module.named_parameters(remove_duplicate=False))
        state.update(self.module.named_buffers(remove_duplicate=False))
        # deepcopy consults the memo first: kept tensors map to themselves, the rest to meta
        memo: dict[int, Any] = {}
        for name, tensor in state.items():
            if name in keep:
                memo[id(tensor)] = tensor
            elif id(tensor) not in memo:
                empty = torch.empty_like(tensor, device="meta")
                memo[id(tensor)] = (torch.nn.Parameter(empty, tensor.requires_grad)
                                    if isinstance(tensor, torch.nn.Parameter) else empty)
        return dataclasses.replace(self, module=copy.deepcopy(self.module, memo))

    # -- structure ----------------------------------------------------------------------
    def to_networkx(self) -> nx.DiGraph:
        """The layers as a networkx DiGraph (nodes carry ``layer=Layer``)."""
        import networkx as nx

        digraph = nx.DiGraph()
        for layer in self.layers:
            digraph.add_node(layer.name, layer=layer)
            digraph.add_edges_from((producer, layer.name) for producer in layer.inputs)
        return digraph

    @functools.cached_property
    def _closed(self) -> nx.DiGraph:
        """The graph with one virtual source before all roots and one sink after all leaves."""
        digraph = self.to_networkx()
        roots = [n for n in digraph if digraph.in_degree(n) == 0]
        leaves = set(self.outputs) | {n for n in digraph if digraph.out_degree(n) == 0}
        digraph.add_edges_from((_SOURCE, root) for root in roots)
        digraph.add_edges_from((leaf, _SINK) for leaf in leaves)
        # a single root or leaf needs no virtual node: drop it so it is no fork or join
        for virtual, degree in ((_SOURCE, digraph.out_degree), (_SINK, digraph.in_degree)):
            if degree(virtual) == 1:
                digraph.remove_node(virtual)
        return digraph

    @functools.cached_property
    def structure(self) -> Structure:
        """Line, multi-path or general DAG, in the sense of seed 001."""
        digraph = self._closed
        forks = [n for n in digraph if digraph.out_degree(n) > 1]
        joins = [n for n in digraph if digraph.in_degree(n) > 1]
        if not forks and not joins:
            return Structure.LINE
        if len(forks) == 1 and len(joins) == 1:
            import networkx as nx

            if nx.has_path(digraph, forks[0], joins[0]):
                return Structure.MULTI_PATH
        return Structure.DAG

    @functools.cached_property
    def cut_points(self) -> tuple[str, ...]:
        """Layers that every input-to-output path passes through, in topological order."""
        import networkx as nx

        digraph = self._closed
        source = _SOURCE if _SOURCE in digraph else self.layers[0].name
        sink = _SINK if _SINK in digraph else next(
            n for n in reversed(self.topological_order()) if digraph.out_degree(n) == 0)
        dominators = nx.immediate_dominators(digraph, source)
        chain, node = [], sink
        while True:
            chain.append(node)
            if node == source:
                break
            node = dominators[node]
        on_every_path = set(chain) - {_SOURCE, _SINK}
        return tuple(name for name in self.topological_order() if name in on_every_path)

    # -- execution ----------------------------------------------------------------------
    def execute(self, values: Mapping[str, torch.Tensor],
                layers: Iterable[str] | None = None) -> dict[str, Any]:
        """Compute ``layers`` (default: all not given) from the tensors in ``values``.

        ``values`` maps layer names to their outputs (model inputs included); each layer
        runs after its inputs, which must be given or computed in this call. Returns the
        outputs of the computed layers by name.
        """
        names = (set(self._index) - set(values)) if layers is None else set(layers)
        unknown = names - set(self._index)
        if unknown:
            raise GraphError(f"Graph '{self.name}' has no layer(s) {sorted(unknown)}.")
        # a shallow copy shares the submodule table, which fx rebuilds on each construction
        interpreter = copy.copy(self._interpreter)
        nodes = self._nodes
        interpreter.env = {nodes[name]: value for name, value in values.items()}
        computed: dict[str, Any] = {}
        with torch.no_grad():
            for name in sorted(names, key=self._index.__getitem__):
                node = nodes[name]
                for source in node.all_input_nodes:
                    if source not in interpreter.env:
                        if source.op != "get_attr":
                            raise GraphError(
                                f"Layer '{name}' needs the output of layer '{source.name}', "
                                "which was neither given nor computed.")
                        interpreter.env[source] = interpreter.run_node(source)
                if node.op == "placeholder":
                    raise GraphError(f"Model input '{name}' must be given, not computed.")
                try:
                    value = interpreter.run_node(node)
                except Exception as error:
                    raise GraphError(f"Layer '{name}' ({self[name].target}) failed: "
                                     f"{type(error).__name__}: {error}") from None
                interpreter.env[node] = computed[name] = value
        return computed

    def compile(self, layers: Iterable[str], inputs: Iterable[str],
                outputs: Iterable[str]) -> fx.GraphModule:
        """One ``fx.GraphModule`` that computes ``layers`` from the values of ``inputs``
        (layer names; its arguments, in that order) and returns the values of ``outputs``
        as a tuple — a piece of the model run as compiled code, not node by node."""
        nodes, graph = self._nodes, fx.Graph()
        env = {nodes[name]: graph.placeholder(name) for name in inputs}
        for name in sorted(layers, key=self.index_of):
            node = nodes[name]
            for source in node.all_input_nodes:
                if source not in env:
                    if source.op != "get_attr":
                        raise GraphError(f"Layer '{name}' needs the output of layer "
                                         f"'{source.name}', which is neither an input nor "
                                         "computed here.")
                    env[source] = graph.node_copy(source)
            env[node] = graph.node_copy(node, env.__getitem__)
        graph.output(tuple(env[nodes[name]] for name in outputs))
        return fx.GraphModule(self.module, graph)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the whole graph layer by layer on the model's arguments (as ``bind_inputs``
        takes them, or as keywords); returns what the model's forward returns."""
        inputs = self.bind_inputs(dict(zip(self.arguments or self.inputs, args)) | kwargs
                                  if kwargs else args)
        return self.assemble_outputs({**dict(zip(self.inputs, inputs)), **self.run_all(*inputs)})

    def bind_inputs(self, value: Any) -> tuple[torch.Tensor, ...]:
        """The input tensors, in the order of ``inputs``, from one tensor, a tuple of the
        forward arguments as traced (or of the input tensors alone), or a dict of them by
        name; a fixed argument given again must have its traced value."""
        if isinstance(value, torch.Tensor):
            return (value,)
        if isinstance(value, list | tuple):
            if len(value) == len(self.inputs) and all(isinstance(v, torch.Tensor) for v in value):
                return tuple(value)
            value = dict(zip(self.arguments or self.inputs, value))
        if not isinstance(value, Mapping):
            raise ExampleInputError(f"The input of model '{self.name}' must be a tensor, a "
                                    f"tuple or a dict of its arguments by name; got "
                                    f"{type(value).__name__}.")
        known = set(self.inputs) | set(self.fixed)
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise ExampleInputError(f"Model '{self.name}' takes {', '.join(sorted(known))}; "
                                    f"got {', '.join(unknown)} as well.")
        for name, fixed in self.fixed.items():
            if name in value and not _equal(value[name], fixed):
                raise ExampleInputError(
                    f"Model '{self.name}' was traced with {name}={fixed!r}, fixed in its "
                    f"graph; got {value[name]!r}. Trace it again with that value.")
        missing = [name for name in self.inputs if name not in value]
        if missing:
            raise ExampleInputError(f"Model '{self.name}' needs input(s) {', '.join(missing)}.")
        return tuple(value[name] for name in self.inputs)

    def run_all(self, *inputs: torch.Tensor) -> dict[str, Any]:
        """Run the whole graph on checked inputs; returns every layer's output by name."""
        self.check_inputs(inputs)
        return self.execute(dict(zip(self.inputs, inputs)))

    def assemble_outputs(self, values: Mapping[str, Any]) -> Any:
        """What the model returns, from layer values: a tensor, or the model's own
        containers (tuple, list, dict, namedtuple, a ``ModelOutput`` — any pytree)."""
        output = next(n for n in self.module.graph.nodes if n.op == "output")
        missing = [n for n in self.outputs if n not in values]
        if missing:
            raise GraphError(f"Output layer(s) {missing} of '{self.name}' were not computed.")
        value = fx.node.map_arg(output.args[0], lambda node: values[node.name])
        spec = self.output_spec
        if spec is None:
            return value
        leaves = tree_leaves(value)  # fx's own dicts and lists, in the model's order
        return tree_unflatten(leaves, spec) if len(leaves) == spec.num_leaves else value

    def check_inputs(self, inputs: tuple[torch.Tensor, ...]) -> None:
        """Raise an ``ExampleInputError`` unless ``inputs`` match the traced input shapes."""
        if len(inputs) != len(self.inputs):
            raise ExampleInputError(
                f"'{self.name}' takes {len(self.inputs)} input(s), got {len(inputs)}.")
        for name, tensor in zip(self.inputs, inputs):
            layer = self[name]
            if not isinstance(tensor, torch.Tensor):
                raise ExampleInputError(f"Input '{name}' must be a tensor, got "
                                        f"{type(tensor).__name__}.")
            if tensor.device.type != "cpu":  # the workers compute on the CPU, with data
                raise ExampleInputError(f"Input '{name}' of '{self.name}' is on device "
                                        f"'{tensor.device}'; give a CPU tensor.")
            if tuple(tensor.shape) != layer.output_shape or str(tensor.dtype) != f"torch.{layer.dtype}":
                raise ExampleInputError(
                    f"Input '{name}' of '{self.name}' must be a {layer.dtype} tensor of shape "
                    f"{list(layer.output_shape)}; got {str(tensor.dtype).removeprefix('torch.')} "
                    f"{list(tensor.shape)}.")

    # -- export -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary: totals, structure and every layer."""
        return {
            "name": self.name, "structure": self.structure.value, "inputs": list(self.inputs),
            "outputs": list(self.outputs), "cut_points": list(self.cut_points),
            "flops": self.flops, "param_bytes": self.param_bytes,
            "activation_bytes": self.activation_bytes,
            "layers": [_layer_dict(layer) for layer in self.layers],
        }


def _spec_state(spec: TreeSpec) -> tuple | None:
    """A pytree spec as nested tuples (torch's own pickling of specs warns of its
    deprecated leaf class)."""
    if spec.is_leaf():
        return None
    return spec.type, spec.context, tuple(_spec_state(child) for child in spec.children())


def _spec(state: tuple | None) -> TreeSpec:
    if state is None:
        return treespec_leaf()
    kind, context, children = state
    return TreeSpec(kind, context, [_spec(child) for child in children])


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that do not compare are not equal
        return False


def _layer_dict(layer: Layer) -> dict[str, Any]:
    geometry = layer.geometry
    return {
        "name": layer.name, "kind": layer.kind.value, "target": layer.target,
        "inputs": list(layer.inputs), "input_shapes": [list(s) for s in layer.input_shapes],
        "output_shape": list(layer.output_shape) if layer.output_shape else None,
        "dtype": layer.dtype, "flops": layer.flops, "param_bytes": layer.param_bytes,
        "output_bytes": layer.output_bytes,
        "geometry": None if geometry is None else {
            "kernel": list(geometry.kernel), "stride": list(geometry.stride),
            "padding": list(geometry.padding), "dilation": list(geometry.dilation),
            "groups": geometry.groups, "ceil_mode": geometry.ceil_mode},
        "attrs": {k: list(v) if isinstance(v, tuple) else v for k, v in layer.attrs.items()},
    }


@dataclass(frozen=True)
class _Ref:
    """A node's argument that is another node, by name, in a pickled graph."""

    name: str


@dataclass(frozen=True)
class _Op:
    """An ATen operator (which does not pickle) by namespace, name and overload."""

    namespace: str
    name: str
    overload: str

    def resolve(self) -> Any:
        return getattr(getattr(getattr(torch.ops, self.namespace), self.name), self.overload)


@dataclass(frozen=True)
class _Function:
    """A function that pickle cannot name (one made inside another, as torch's
    ``F.max_pool2d``), by the qualified name fx's generated code uses for it."""

    name: str

    def resolve(self) -> Any:
        parts = self.name.split(".")
        for split in range(len(parts) - 1, 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            return functools.reduce(getattr, parts[split:], found)
        raise GraphError(f"An unpickled graph calls '{self.name}', which cannot be imported.")


def _graph_state(module: fx.GraphModule) -> tuple[dict[str, Any], list[tuple]]:
    """What the graph reads (submodules, parameters, by target) and its nodes, in order."""
    owned, nodes = {}, []
    for node in module.graph.nodes:
        if node.op in ("call_module", "get_attr"):
            owned[node.target] = functools.reduce(getattr, node.target.split("."), module)
        refer = functools.partial(fx.node.map_arg, fn=lambda n: _Ref(n.name))
        target = node.target
        if isinstance(target, torch._ops.OpOverload):
            target = _Op(target.namespace, target._opname, target._overloadname)
        elif callable(target) and "<locals>" in getattr(target, "__qualname__", ""):
            target = _Function(_get_qualified_name(target))
        nodes.append((node.op, node.name, target, refer(node.args), refer(node.kwargs)))
    return owned, nodes


def _graph_module(owned: dict[str, Any], nodes: list[tuple]) -> fx.GraphModule:
    """The graph module ``_graph_state`` describes, with the same node names."""
    graph, made = fx.Graph(), {}

    def resolve(value):
        return made[value.name] if isinstance(value, _Ref) else value

    for op, name, target, args, kwargs in nodes:
        target = target.resolve() if isinstance(target, _Op | _Function) else target
        made[name] = graph.create_node(op, target, fx.node.map_aggregate(args, resolve),
                                       fx.node.map_aggregate(kwargs, resolve), name=name)
    return fx.GraphModule(owned, graph)
