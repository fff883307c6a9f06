"""Loading a cluster: from a YAML file, a dict, a preset expression, or a ``Cluster``.

A file (or dict) names its devices, each from a preset with fields overridden or fully
described, a default network for every pair of devices, and links that differ::

    name: lab
    network: wifi                 # preset, or {bandwidth_bps, latency_s, shared}
    devices:
      - {name: camera, preset: rpi4b}
      - {name: server, preset: edge-server, memory_bytes: 4.0e9}
    links:
      - {between: [camera, server], preset: ethernet}

An expression is devices joined by ``+``, each a preset with an optional ``*count``, then
``@network``: ``rpi4b+edge-server@wifi``, ``rpi3*6@wifi``,
``rpi4b*3+jetson-tx2*2+edge-server@wifi``; one device alone needs no network (``rpi4b``). Devices are named after their preset, with
``-0``, ``-1``… where a preset appears more than once. The first device is where the
model's input arrives.
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError

from edgeweave.cluster import presets
from edgeweave.cluster.model import Cluster, Device, Link
from edgeweave.errors import ClusterConfigError, UnknownNameError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(_Strict):
    """A link's numbers; ``shared`` puts all links of a network on one medium."""

    bandwidth_bps: PositiveFloat
    latency_s: float = Field(ge=0)
    shared: bool = False


class DeviceSpec(_Strict):
    """A device: a preset, any field overridden, or every field given."""

    name: str = Field(min_length=1)
    preset: str | None = None
    flops_per_s: PositiveFloat | None = None
    memory_bytes_per_s: PositiveFloat | None = None
    layer_overhead_s: float | None = Field(default=None, ge=0)
    memory_bytes: PositiveFloat | None = None
    threads: int | None = Field(default=None, ge=1, le=256)  # a million crashes torch
    profile: str | None = None
    profile_scale: PositiveFloat = 1.0
    segment_overhead_s: float = Field(default=0.0, ge=0)


class LinkSpec(_Strict):
    """A link between two devices, from a network preset or with its own numbers."""

    between: tuple[str, str]
    preset: str | None = None
    bandwidth_bps: PositiveFloat | None = None
    latency_s: float | None = Field(default=None, ge=0)
    medium: str | None = None


class ClusterSpec(_Strict):
    """The whole file."""

    name: str = "cluster"
    devices: list[DeviceSpec] = Field(min_length=1)
    network: str | NetworkSpec | None = None
    links: list[LinkSpec] = []


def load(source: str | Path | Mapping[str, Any] | Cluster) -> Cluster:
    """A cluster from a YAML path, a dict of the same form, an expression, or a Cluster."""
    if isinstance(source, Cluster):
        return source
    if isinstance(source, Mapping):
        return _from_spec(_validate(source, "cluster description"), Path.cwd())
    text = str(source)
    if Path(text).is_dir():
        raise ClusterConfigError(f"'{text}' is a folder; give a cluster file (.yaml) or an "
                                 "expression such as 'rpi4b*2+edge-server@wifi'.")
    if isinstance(source, Path) or text.endswith((".yaml", ".yml")) or Path(text).is_file():
        # a profile named relative to the file is found wherever the file is read from
        return _from_spec(_validate(_read_yaml(Path(text)), f"cluster file '{text}'"),
                          Path(text).resolve().parent)
    return _from_expression(text)


def save(cluster: Cluster, path: str | Path) -> None:
    """Write ``cluster`` as a YAML file that ``load`` reads back to an equal cluster, its
    profiles named relative to the file's folder (the folder can move as a whole)."""
    import yaml

    path = Path(path)
    data = to_dict(cluster)
    for device in data["devices"]:
        if device["profile"]:
            device["profile"] = os.path.relpath(device["profile"], path.resolve().parent)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def to_dict(cluster: Cluster) -> dict[str, Any]:
    """The fully explicit dict form, which ``load`` reads back to an equal cluster."""
    return {
        "name": cluster.name,
        "devices": [{"name": d.name, "preset": None if d.kind == "custom" else d.kind,
                     "flops_per_s": d.flops_per_s, "memory_bytes_per_s": d.memory_bytes_per_s,
                     "layer_overhead_s": d.layer_overhead_s, "memory_bytes": d.memory_bytes,
                     "threads": d.threads, "profile": d.profile,
                     "profile_scale": d.profile_scale,
                     "segment_overhead_s": d.segment_overhead_s} for d in cluster.devices],
        "links": [{"between": [link.a, link.b], "bandwidth_bps": link.bandwidth_bps,
                   "latency_s": link.latency_s, "medium": link.medium}
                  for link in cluster.links],
    }


def _read_yaml(path: Path) -> Any:
    import yaml

    if not path.is_file():
        raise ClusterConfigError(f"No cluster file '{path}'.")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ClusterConfigError(f"Cluster file '{path}' is not valid YAML: {error}") from None


def _validate(data: Any, where: str) -> ClusterSpec:
    if not isinstance(data, Mapping):
        raise ClusterConfigError(f"{where} must be a mapping with 'devices'; got "
                                 f"{type(data).__name__}.")
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'top level'}: {e['msg']}"
                             f" (got {e.get('input')!r})" for e in error.errors())
        raise ClusterConfigError(f"Invalid {where}: {problems}.") from None


def _from_spec(spec: ClusterSpec, folder: Path | None = None) -> Cluster:
    """The cluster of a validated description; relative profile paths are taken from
    ``folder`` and held absolute."""
    devices = tuple(_device(d, folder) for d in spec.devices)
    names = [d.name for d in devices]
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise ClusterConfigError(f"Device names must be unique; repeated: {repeated}.")
    twice = [sorted(p) for p, n in Counter(frozenset(k.between) for k in spec.links).items()
             if n > 1]
    if twice:
        raise ClusterConfigError(f"Each pair of devices has at most one link; given twice: "
                                 f"{twice}.")
    explicit = {frozenset(link.between): _link(link, names) for link in spec.links}
    default = _network(spec.network) if spec.network is not None else None
    links = []
    for a, b in itertools.combinations(names, 2):
        link = explicit.pop(frozenset((a, b)), None)
        if link is None and default is not None:
            link = Link(a, b, default.bandwidth_bps, default.latency_s,
                        _medium_name(spec.network) if default.shared else None)
        if link is not None:
            links.append(link)
    if explicit:
        raise ClusterConfigError(f"A link must join two different devices: "
                                 f"{[sorted(pair) for pair in explicit]}.")
    return Cluster(spec.name, devices, tuple(links))


def _device(spec: DeviceSpec, folder: Path | None) -> Device:
    base: dict[str, Any] = dict(_preset(presets.DEVICES, spec.preset, "device")) if spec.preset else {}
    overrides = spec.model_dump(exclude={"name", "preset"}, exclude_none=True)
    fields = {**base, **overrides}
    if folder is not None and "profile" in fields:
        fields["profile"] = str((folder / fields["profile"]).resolve())
    missing = [f for f in ("flops_per_s", "memory_bytes_per_s", "layer_overhead_s",
                           "memory_bytes") if f not in fields]
    if missing:
        raise ClusterConfigError(f"Device '{spec.name}' needs a preset or the field(s) "
                                 f"{missing}.")
    fields["memory_bytes"] = int(fields["memory_bytes"])
    return Device(name=spec.name, kind=spec.preset or "custom", **fields)


def _link(spec: LinkSpec, names: list[str]) -> Link:
    for name in spec.between:
        if name not in names:
            raise ClusterConfigError(f"Link {list(spec.between)} names device '{name}', which "
                                     f"is not in the cluster ({', '.join(names)}).")
    network = _network(spec.preset) if spec.preset else None
    bandwidth = spec.bandwidth_bps or (network.bandwidth_bps if network else None)
    latency = spec.latency_s if spec.latency_s is not None else (
        network.latency_s if network else None)
    if bandwidth is None or latency is None:
        raise ClusterConfigError(f"Link {list(spec.between)} needs a preset or both "
                                 "bandwidth_bps and latency_s.")
    medium = spec.medium or (spec.preset if network and network.shared else None)
    return Link(spec.between[0], spec.between[1], bandwidth, latency, medium)


def _network(value: str | NetworkSpec) -> NetworkSpec:
    if isinstance(value, NetworkSpec):
        return value
    return NetworkSpec(**_preset(presets.NETWORKS, value, "network"))


def _medium_name(network: str | NetworkSpec) -> str:
    return network if isinstance(network, str) else "network"


def _preset(catalog: Mapping[str, Any], name: str, what: str) -> Mapping[str, Any]:
    if name not in catalog:
        raise UnknownNameError(f"Unknown {what} preset '{name}'. Known: {', '.join(catalog)}.")
    return catalog[name]


_TERM = re.compile(r"([A-Za-z0-9_.-]+?)(?:\*(\d+))?")


def _from_expression(text: str) -> Cluster:
    devices_part, at, network = text.replace(" ", "").partition("@")
    if not at and _TERM.fullmatch(devices_part) and "*" not in devices_part:
        return _from_spec(ClusterSpec(name=text, devices=[{"name": text, "preset": text}]))
    if not at or not devices_part or not network:
        raise ClusterConfigError(
            f"'{text}' is neither a cluster file nor an expression like 'rpi4b+edge-server@wifi'"
            f" (devices joined by '+', each preset optionally '*count', then '@network').")
    kinds: list[str] = []
    for term in devices_part.split("+"):
        match = _TERM.fullmatch(term)
        if match is None or (match.group(2) is not None and int(match.group(2)) < 1):
            raise ClusterConfigError(f"Cannot read '{term}' in cluster expression '{text}'.")
        kinds += [match.group(1)] * int(match.group(2) or 1)
    totals, seen = Counter(kinds), Counter()
    devices = []
    for kind in kinds:
        name = kind if totals[kind] == 1 else f"{kind}-{seen[kind]}"
        seen[kind] += 1
        devices.append({"name": name, "preset": kind})
    return _from_spec(ClusterSpec(name=text, devices=devices, network=network))
