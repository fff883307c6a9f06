"""The third-party model sweep: models users bring (torchvision, timm, smp, MONAI,
efficientnet_pytorch, Hugging Face, Ultralytics) traced, counted, planned by every planner
and run equal to the model. The suite runs the fast subset; ``pytest -m sweep`` the rest,
and ``bench/model_sweep.py`` writes the whole table to docs/models.md."""

from __future__ import annotations

import pytest

from tests.sweep.catalogue import CATALOGUE, import_tolerantly
from tests.sweep.check import check

# the local backend where it once failed: node names lost in unpickling (a split's items),
# and a MONAI model that did not pickle; Ray where it once failed: a segment reading
# nothing (BERT's arange) in a compiled graph (bench/model_sweep.py runs every model there)
LOCAL_SAMPLE = {"torchvision:shufflenet_v2_x0_5", "monai:BasicUNet"}
RAY_SAMPLE = {"transformers:BertModel"}


@pytest.mark.parametrize("entry", [
    pytest.param(e, id=e.id, marks=() if e.fast else pytest.mark.sweep) for e in CATALOGUE])
def test_model_plans_and_runs_equal_to_itself(entry, request):
    if import_tolerantly(entry.module) is None:
        pytest.skip(f"{entry.library} is not installed")
    if entry.id in RAY_SAMPLE:
        request.getfixturevalue("ray_instance")
    result = check(entry, local=entry.id in LOCAL_SAMPLE or not entry.fast,
                   ray=entry.id in RAY_SAMPLE)
    assert not result.refusal, result.refusal
    assert not result.defects, "\n".join(result.defects)
    assert "ok" in result.planners.values()  # at least one planner made a plan
    assert result.local == "ok" or entry.id not in LOCAL_SAMPLE, result.local
    assert result.ray == "ok" or entry.id not in RAY_SAMPLE, result.ray
