"""Execution units and the plan that places and orders them (EdgeFlow's terms, seed 002).

A ``Unit`` computes a region of the output of one layer, or of the last layer of a fused
stack of layers (DeepThings, seed 003), on one device. Its ``needs`` name, for each
region of another layer it reads, the unit that produces it. The forwarding table of a
unit — who receives which region of its outputs — is the other side of those needs and is
derived (``Plan.forwarding``), not stored. Model inputs are units too: ``input`` layers
computed, for free, on the device where the input arrives. A *relay* computes nothing: it
gathers a region of a layer that other units computed, and units that read the layer
read it from the relay (MoDNN's gather after every layer, seed 003's baseline; a
gateway handing out a camera's frame).

Text forms: a need is ``u3:layer1_0_conv1_0[0:1,0:64,0:28,0:56]``; a unit is
``u7 resnet18 layer1_0_conv1_0..layer1_0_conv1_2 [0:1,0:64,0:28,0:56] @rpi4b <- u3:…``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeweave.cluster import Cluster
from edgeweave.errors import PlanError
from edgeweave.graph import LayerGraph
from edgeweave.units.region import Region, required_regions
from edgeweave.units.workload import Stream


@dataclass(frozen=True, slots=True)
class Need:
    """A region of ``layer``'s output, produced by unit ``unit``, that a unit reads."""

    unit: str
    layer: str
    region: Region

    def __repr__(self) -> str:
        return f"{self.unit}:{self.layer}{self.region!r}"

    @classmethod
    def parse(cls, text: str) -> Need:
        """The need written as its ``repr``."""
        match = re.fullmatch(r"([^:]+):([^\[]+)(\[.*\])", text.strip())
        if match is None:
            raise PlanError(f"Not a need: '{text}' (expected unit:layer[a:b,...]).")
        return cls(match.group(1), match.group(2), Region.parse(match.group(3)))


@dataclass(frozen=True, slots=True)
class Unit:
    """One execution unit: ``layers`` (one, or a fused consecutive stack) of graph ``graph``,
    computing ``region`` of the last layer's output on ``device`` — or, a ``relay``,
    gathering that region of its one layer from the units that computed it."""

    id: str
    graph: str
    layers: tuple[str, ...]
    region: Region
    device: str
    needs: tuple[Need, ...] = ()
    relay: bool = False

    @property
    def last(self) -> str:
        """The layer whose region the unit computes."""
        return self.layers[-1]

    def __repr__(self) -> str:
        layers = self.layers[0] if len(self.layers) == 1 else f"{self.layers[0]}..{self.last}"
        needs = f" <- {', '.join(map(repr, self.needs))}" if self.needs else ""
        relay = " relay" if self.relay else ""
        return f"{self.id} {self.graph}{relay} {layers} {self.region!r} @{self.device}{needs}"


@dataclass(frozen=True)
class Plan:
    """Units placed on the devices of ``cluster``, run in ``order`` (device -> unit ids).

    ``graphs`` are the models of the workload by name; ``models`` optionally gives, per
    graph, the model spec (zoo name or ``module:attr``) that ``Plan.from_json`` re-traces;
    ``notes`` is what the planner reports about its choice (JSON values).

    ``pool`` makes some units stealable (seed 003's work stealing): unit id -> the devices
    that may take it at run time. Such a unit stays in its planned device's order (its
    *home*, which runs it if nobody took it first); a device of its takers that runs out
    of work asks the home for it (``units.stealing``: stealable units travel as tasks,
    the segments ``units.segments`` gives them). ``fallback`` names stealable tasks (by
    their first unit) that may also run *unshrunk* — as one fused stack from what is before
    them (``units.stealing.unshrunk``) — when what they read from other tasks is late:
    DeepThings' odd tiles, which run without their neighbours' strips when these are not
    there yet.

    ``workload`` gives, per model, its stream (``units.workload``): when its frames arrive,
    its weight and deadline; ``streams`` fills in the default for a model without one.
    """

    graphs: Mapping[str, LayerGraph]
    cluster: Cluster
    units: tuple[Unit, ...]
    order: Mapping[str, tuple[str, ...]]
    planner: str = "manual"
    options: Mapping[str, Any] = field(default_factory=dict)
    models: Mapping[str, str] = field(default_factory=dict)
    notes: Mapping[str, Any] = field(default_factory=dict)
    pool: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    fallback: tuple[str, ...] = ()
    workload: Mapping[str, Stream] = field(default_factory=dict)

    def __repr__(self) -> str:
        per_device = ", ".join(f"{d}: {len(ids)}" for d, ids in self.order.items() if ids)
        return (f"Plan({self.planner!r}, models={list(self.graphs)}, {len(self.units)} units "
                f"on {self.cluster.name!r} [{per_device}])")

    @functools.cached_property
    def _by_id(self) -> dict[str, Unit]:
        return {unit.id: unit for unit in self.units}

    def unit(self, unit_id: str) -> Unit:
        """The unit called ``unit_id``."""
        try:
            return self._by_id[unit_id]
        except KeyError:
            raise PlanError(f"The plan has no unit '{unit_id}'.") from None

    def is_input(self, unit_id: str) -> bool:
        """Whether a unit stands for a model input (computed, for free, where it arrives)."""
        unit = self.unit(unit_id)
        return not unit.relay and self.graphs[unit.graph][unit.last].kind == "input"

    @functools.cached_property
    def sources(self) -> dict[str, str]:
        """Per model, its source: the device where its inputs arrive (its input units'),
        where its outputs go back; the cluster's first device for a model without one."""
        found = {name: self.cluster.devices[0].name for name in self.graphs}
        for unit in self.units:
            if self.is_input(unit.id):
                found[unit.graph] = unit.device
        return found

    @functools.cached_property
    def streams(self) -> dict[str, Stream]:
        """Per model, its stream: the plan's, or frames at time 0 from its source."""
        return {name: self.workload.get(name, Stream(source))
                for name, source in self.sources.items()}

    def produced(self, unit_id: str) -> dict[str, Region]:
        """The region of each of its layers that a unit computes."""
        unit = self.unit(unit_id)
        return layer_regions(unit, self.graphs[unit.graph])

    def for_device(self, device: str) -> Plan:
        """The plan as ``device``'s worker holds it: every unit's description (to know where
        results go) but only the weights of the layers its own units, and the pool units
        it may take, compute."""
        layers: dict[str, set[str]] = {}
        for unit in self.units:
            if not unit.relay and (unit.device == device or device in self.pool.get(unit.id, ())):
                layers.setdefault(unit.graph, set()).update(unit.layers)
        graphs = {name: graph.with_weights_of(layers.get(name, ()))
                  for name, graph in self.graphs.items()}
        return dataclasses.replace(self, graphs=graphs)

    @functools.cached_property
    def read_after(self) -> dict[str, frozenset[str]]:
        """Per unit, its layers that something reads once it has run: its last, those its
        consumers need, and model outputs — the rest of a fused stack can be freed as soon
        as the stack has used it."""
        table = {unit.id: {unit.last} | (set(unit.layers) & set(self.graphs[unit.graph].outputs))
                 for unit in self.units}
        for unit in self.units:
            for need in unit.needs:
                table[need.unit].add(need.layer)
        return {key: frozenset(value) for key, value in table.items()}

    @functools.cached_property
    def forwarding(self) -> dict[str, tuple[tuple[str, Need], ...]]:
        """Per unit, the (consumer unit, need) pairs it must send: its forwarding table."""
        table: dict[str, list[tuple[str, Need]]] = {unit.id: [] for unit in self.units}
        for unit in self.units:
            for need in unit.needs:
                table[need.unit].append((unit.id, need))
        return {key: tuple(value) for key, value in table.items()}


def reads(unit: Unit, graph: LayerGraph) -> dict[str, Region]:
    """The region of each layer of other units that a unit reads: what its region needs
    of the layers before its stack, or, a relay, its region of its own layer."""
    if unit.relay:
        return {unit.last: unit.region}
    wanted = required_regions(graph, {unit.last: unit.region}, unit.layers)
    return {layer: region for layer, region in wanted.items() if layer not in unit.layers}


def layer_regions(unit: Unit, graph: LayerGraph) -> dict[str, Region]:
    """The region of each of its layers that a unit computes: a fused stack computes, in
    the layers before its last, the receptive field of the last layer's region."""
    if len(unit.layers) == 1:
        return {unit.last: unit.region}
    return dict(_stack_regions(unit.layers, unit.region, graph))


def freed_after(regions: Mapping[str, Region], graph: LayerGraph,
                keep: Collection[str]) -> dict[str, tuple[str, ...]]:
    """For each layer of a stack (``regions``, in order), the stack's layers that can be
    freed once it has run: those it is the stack's last reader of, unless kept."""
    last_read = {producer: layer for layer in regions for producer in graph[layer].inputs}
    freed: dict[str, list[str]] = {layer: [] for layer in regions}
    for producer, layer in last_read.items():
        if producer in regions and producer not in keep:
            freed[layer].append(producer)
    return {layer: tuple(names) for layer, names in freed.items()}


@functools.lru_cache(maxsize=4096)  # asked per unit at every frame; units and graphs are frozen
def _stack_regions(layers: tuple[str, ...], region: Region, graph: LayerGraph
                   ) -> tuple[tuple[str, Region], ...]:
    regions = required_regions(graph, {layers[-1]: region}, layers)
    return tuple((name, regions[name]) for name in layers)
