"""The cost model: seconds to compute a share of a layer on a device, and to move bytes.

Analytic (the default) is a roofline per layer::

    t = overhead + share * max(flops / flops_per_s, bytes / memory_bytes_per_s)

where ``bytes`` are the layer's input and output activations plus its parameters — so a
large fully connected layer is bound by reading its weights, a convolution by its FLOPs,
and an element-wise op by its activations. A device that names a measured profile uses
``profile_scale * (fixed + share * (measured - fixed))`` instead, a line through the whole
layer's time and, once calibrated, a band's time in a real split run (``fixed`` is 0
unless calibrated, and may exceed ``measured``: a band computed beside the other devices'
can cost more than the whole layer alone);
its profile must hold the model (matched by the graph's fingerprint, so a renamed or
reshaped model is not mistaken for it).
A transfer costs ``latency + 8 * n_bytes / bandwidth_bps``; on one device it is free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgeweave.cluster import Cluster, Device, Link
from edgeweave.cost.profile import ModelProfile, load
from edgeweave.errors import EdgeweaveError
from edgeweave.graph import Layer, LayerGraph, OpKind


@dataclass(frozen=True)
class CostModel:
    """Times of layers on devices and of transfers on links.

    ``profiles`` maps a device name to its measured profiles by graph fingerprint; devices
    not in it are costed analytically.
    """

    profiles: Mapping[str, Mapping[str, ModelProfile]] = field(default_factory=dict)

    @classmethod
    def for_cluster(cls, cluster: Cluster) -> CostModel:
        """The cost model of a cluster: each device's profile file is read once."""
        return cls({d.name: load(d.profile) for d in cluster.devices if d.profile})

    def compute_s(self, graph: LayerGraph, layer: Layer, device: Device,
                  share: float = 1.0) -> float:
        """Seconds for ``device`` to compute ``share`` (0..1) of ``layer`` of ``graph``."""
        if not 0.0 <= share <= 1.0:
            raise EdgeweaveError(f"A share of layer '{layer.name}' must lie in [0, 1]; "
                                 f"got {share}.")
        if layer.kind is OpKind.INPUT or share == 0.0:
            return 0.0
        if device.name in self.profiles:
            profile = self.profiles[device.name].get(graph.fingerprint)
            if profile is None:
                raise EdgeweaveError(
                    f"The profile of device '{device.name}' holds no times for model "
                    f"'{graph.name}' as traced here: run `edgeweave profile` for it.")
            whole = profile.layer_s[layer.name]
            fixed = profile.fixed_s.get(layer.name, 0.0)
            return device.profile_scale * (fixed + share * (whole - fixed))
        work = max(layer.flops / device.flops_per_s,
                   (layer.input_bytes + layer.output_bytes + layer.param_bytes)
                   / device.memory_bytes_per_s)
        return device.layer_overhead_s + share * work

    @staticmethod
    def occupancy_s(n_bytes: int, link: Link) -> float:
        """Seconds a transfer of ``n_bytes`` keeps ``link`` (or its medium) busy."""
        return 8.0 * n_bytes / link.bandwidth_bps

    @staticmethod
    def transfer_s(n_bytes: int, link: Link | None) -> float:
        """Seconds to move ``n_bytes`` over ``link`` (``None``: the same device, free): the
        link's occupancy, then its latency."""
        if link is None or n_bytes == 0:
            return 0.0
        return CostModel.occupancy_s(n_bytes, link) + link.latency_s
