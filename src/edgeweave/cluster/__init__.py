"""Clusters of devices and links: presets, files and expressions."""

from edgeweave.cluster.config import load, to_dict
from edgeweave.cluster.model import Cluster, Device, Link

__all__ = ["Cluster", "Device", "Link", "load", "to_dict"]
