"""Clusters of devices and links: presets, files and expressions."""

from edgeweave.cluster.model import Cluster, Device, Link

__all__ = ["Cluster", "Device", "Link", "load", "to_dict"]


def __getattr__(name: str):
    # config needs pydantic and yaml: load them only when a cluster is loaded
    if name in ("load", "to_dict"):
        from edgeweave.cluster import config

        return getattr(config, name)
    raise AttributeError(f"module 'edgeweave.cluster' has no attribute '{name}'")
