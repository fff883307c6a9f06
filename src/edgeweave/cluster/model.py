"""Devices, links and the cluster they form: plain values, validated where they are loaded."""

from __future__ import annotations

from dataclasses import dataclass

from edgeweave.errors import UnknownNameError


@dataclass(frozen=True, slots=True)
class Device:
    """One device. The analytic cost model reads the throughputs and the overhead; a
    measured profile (``profile``, scaled by ``profile_scale``) replaces them when given."""

    name: str
    kind: str  # the preset it came from, or "custom"
    flops_per_s: float  # effective throughput on compute-bound layers (conv, linear)
    memory_bytes_per_s: float  # effective memory bandwidth for memory-bound layers
    layer_overhead_s: float  # fixed cost of running one unit (dispatch, kernel launch)
    memory_bytes: int  # what weights and live activations may occupy
    threads: int | None = None  # thread budget of its worker (None: the runtime decides)
    profile: str | None = None  # path of a measured per-layer profile (JSON)
    profile_scale: float = 1.0  # the profile's times are multiplied by this
    # what its worker pays once per segment beyond the layers (receiving, waking, sending):
    # measured by ``calibrate`` for one backend, 0 otherwise
    segment_overhead_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Link:
    """A link between two devices, used in both directions, one transfer at a time.

    Links that name the same ``medium`` (one WiFi cell, say) share it: all their transfers
    are serialised together.
    """

    a: str
    b: str
    bandwidth_bps: float  # bits per second
    latency_s: float  # one-way latency added to every transfer
    medium: str | None = None

    @property
    def channel(self) -> str:
        """What a transfer on this link occupies: its shared medium, or the link itself."""
        return self.medium or f"{self.a}<->{self.b}"

    def joins(self, src: str, dst: str) -> bool:
        """True when this link connects ``src`` and ``dst`` (either way round)."""
        return {self.a, self.b} == {src, dst}


@dataclass(frozen=True, slots=True)
class Cluster:
    """Devices in a fixed order (the first is where inputs arrive) and the links between them."""

    name: str
    devices: tuple[Device, ...]
    links: tuple[Link, ...]

    def __repr__(self) -> str:
        return (f"Cluster('{self.name}', devices=[{', '.join(d.name for d in self.devices)}], "
                f"{len(self.links)} links)")

    @staticmethod
    def load(source) -> Cluster:
        """A cluster from a YAML path, a dict, an expression (``rpi4b+edge-server@wifi``)."""
        from edgeweave.cluster.config import load

        return load(source)

    def to_dict(self) -> dict:
        """The explicit dict form, which ``Cluster.load`` reads back to an equal cluster."""
        from edgeweave.cluster.config import to_dict

        return to_dict(self)

    @property
    def names(self) -> tuple[str, ...]:
        """Device names in order."""
        return tuple(device.name for device in self.devices)

    def device(self, name: str) -> Device:
        """The device called ``name``."""
        for device in self.devices:
            if device.name == name:
                return device
        raise UnknownNameError(f"Cluster '{self.name}' has no device '{name}'. "
                               f"Its devices: {', '.join(self.names)}.")

    def link(self, src: str, dst: str) -> Link:
        """The link between two different devices."""
        for link in self.links:
            if link.joins(src, dst):
                return link
        self.device(src), self.device(dst)  # an unknown name gets its own message
        raise UnknownNameError(f"Cluster '{self.name}' has no link between '{src}' and '{dst}'.")
