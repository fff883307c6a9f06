"""Plans and their execution units; the region arithmetic they rest on."""

from edgeweave.units.build import Part, build_plan, relay, whole
from edgeweave.units.plan import Need, Plan, Unit, layer_regions
from edgeweave.units.region import Region, covers, input_regions, required_regions
from edgeweave.units.timeline import Event, Timeline
from edgeweave.units.timing import unit_compute_s
from edgeweave.units.validate import Footprint, dependencies, execution_order, footprints, validate

__all__ = ["Event", "Footprint", "Need", "Part", "Plan", "Region", "Timeline", "Unit",
           "build_plan", "covers", "dependencies", "execution_order", "footprints",
           "input_regions", "layer_regions", "relay", "required_regions", "unit_compute_s",
           "validate", "whole"]
