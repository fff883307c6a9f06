"""Plans and their execution units; the region arithmetic they rest on."""

from edgeweave.units.region import Region, input_regions, required_regions

__all__ = ["Region", "input_regions", "required_regions"]
