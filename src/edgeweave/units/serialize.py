"""Plans as JSON: everything needed to simulate or run them again.

The file records the cluster (fully explicit), the planner and its options, each model's
spec (zoo name or ``module:attr``), input shapes and graph fingerprint, the units in their
text forms, each device's order, the takers of stealable units and each model's stream
(``workload``). Loading re-traces each model from its spec (or takes the graphs you
pass), refuses a model whose fingerprint changed, and validates the plan. A spec that
names code — a module or a ``.py`` file, not a zoo model — is loaded only when the caller
trusts the file (``trust_specs=True``): a shared plan must not run what it names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeweave.cluster import Cluster
from edgeweave.errors import EdgeweaveError, PlanError
from edgeweave.graph import LayerGraph
from edgeweave.units.plan import Need, Plan, Unit
from edgeweave.units.region import Region
from edgeweave.units.validate import validate
from edgeweave.units.workload import Stream

VERSION = 1


def to_json(plan: Plan) -> str:
    """The plan as a JSON document."""
    return json.dumps({
        "edgeweave_plan": VERSION,
        "planner": plan.planner,
        "options": dict(plan.options),
        "cluster": plan.cluster.to_dict(),
        "models": {name: {"spec": plan.models.get(name), "fingerprint": graph.fingerprint,
                          "input_shapes": [list(graph[i].output_shape) for i in graph.inputs]}
                   for name, graph in plan.graphs.items()},
        "units": [{"id": u.id, "graph": u.graph, "layers": list(u.layers),
                   "region": repr(u.region), "device": u.device,
                   "needs": [repr(n) for n in u.needs]} | ({"relay": True} if u.relay else {})
                  for u in plan.units],
        "order": {device: list(ids) for device, ids in plan.order.items()},
        "notes": dict(plan.notes),
        "pool": {uid: list(takers) for uid, takers in plan.pool.items()},
        "workload": {name: stream.to_dict() for name, stream in plan.workload.items()},
    } | ({"fallback": list(plan.fallback)} if plan.fallback else {}), indent=1)


def from_json(text: str, graphs: Mapping[str, LayerGraph] | None = None,
              trust_specs: bool = False) -> Plan:
    """A validated plan from its JSON; ``graphs`` replaces re-tracing models by spec, and
    ``trust_specs`` allows specs that import a module or run a file."""
    try:
        data: Any = json.loads(text)
        if data.get("edgeweave_plan") != VERSION:
            raise PlanError(f"Not an edgeweave plan of version {VERSION}.")
        cluster = Cluster.load(data["cluster"])
        models = {name: entry.get("spec") for name, entry in data["models"].items()}
        loaded = _graphs(data["models"], graphs or {}, trust_specs)
        units = tuple(Unit(u["id"], u["graph"], tuple(u["layers"]), Region.parse(u["region"]),
                           u["device"], tuple(Need.parse(n) for n in u["needs"]),
                           bool(u.get("relay", False)))
                      for u in data["units"])
        order = {device: tuple(ids) for device, ids in data["order"].items()}
        plan = Plan(loaded, cluster, units, order, data["planner"], data["options"],
                    {k: v for k, v in models.items() if v}, data.get("notes", {}),
                    {uid: tuple(takers) for uid, takers in data.get("pool", {}).items()},
                    tuple(data.get("fallback", ())),
                    {name: Stream.from_dict(stream)
                     for name, stream in data.get("workload", {}).items()})
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise PlanError(f"Malformed plan file: {type(error).__name__}: {error}.") from None
    validate(plan)
    return plan


def save(plan: Plan, path: str | Path) -> None:
    """Write the plan's JSON to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(to_json(plan))


def load(path: str | Path, graphs: Mapping[str, LayerGraph] | None = None,
         trust_specs: bool = False) -> Plan:
    """Read a plan written by ``save`` (``graphs`` and ``trust_specs`` as ``from_json``)."""
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"No plan file '{path}'.")
    return from_json(path.read_text(), graphs, trust_specs)


def _graphs(entries: Mapping[str, Any], given: Mapping[str, LayerGraph],
            trust_specs: bool) -> dict[str, LayerGraph]:
    from edgeweave.graph import trace
    from edgeweave.models import load as load_model
    from edgeweave.models import names as zoo_names

    result = {}
    for name, entry in entries.items():
        if name in given:
            graph = given[name]
        elif entry.get("spec") and not trust_specs and entry["spec"] not in zoo_names():
            raise PlanError(f"The plan's model '{name}' is loaded by '{entry['spec']}', which "
                            "would import or run code the plan file names: pass its traced "
                            "graph (graphs={...}), or trust the file (trust_specs=True; "
                            "--trust on the command line).")
        elif entry.get("spec"):
            shapes = entry["input_shapes"]
            module, example = load_model(entry["spec"], tuple(shapes[0]) if shapes else None)
            graph = trace(module, example, name=name)
        else:
            raise EdgeweaveError(f"The plan's model '{name}' has no spec to load it from: "
                                 "pass its traced graph (graphs={...}).")
        if graph.fingerprint != entry["fingerprint"]:
            raise PlanError(f"Model '{name}' no longer matches the plan (its layers or shapes "
                            "changed): plan it again.")
        result[name] = graph
    return result
