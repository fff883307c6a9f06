"""Plans and their execution units; the region arithmetic they rest on."""

from edgeweave.units.build import Part, build_plan, relay, whole
from edgeweave.units.plan import Need, Plan, Unit, layer_regions
from edgeweave.units.region import Region, covers, input_regions, required_regions
from edgeweave.units.timeline import Event, Timeline
from edgeweave.units.timing import unit_compute_s
from edgeweave.units.validate import Footprint, dependencies, execution_order, footprints, validate
from edgeweave.units.workload import (Stream, Workload, arrival_times, deadlines_met,
                                      objective_s)

__all__ = ["Event", "Footprint", "Need", "Part", "Plan", "Region", "Stream", "Timeline", "Unit",
           "Workload", "arrival_times", "build_plan", "covers", "deadlines_met", "dependencies",
           "execution_order", "footprints", "input_regions", "layer_regions", "objective_s",
           "relay", "required_regions", "unit_compute_s", "validate", "whole"]
