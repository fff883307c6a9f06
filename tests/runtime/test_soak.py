"""A short soak (``bench/soak.py`` streams 1,000 frames): a stream of distinct frames through
a plan spread over four local workers while two random workers are killed and frozen, each
fault sent when a given frame's outputs come out (events, not wall-clock margins); every
output is checked against the model on its own frame, in order, and none may be lost."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal

import pytest
import torch

import edgeweave as ew
from tests.conftest import zoo_model
from tests.runtime.test_local import _spread_plan

FOUR = "rpi4b*3+edge-server@wifi"
FRAMES = 40


@pytest.mark.parametrize("seed", [0, 1])
def test_a_stream_survives_a_random_kill_and_a_random_freeze_losing_nothing(seed):
    rng = random.Random(seed)
    plan = _spread_plan("two_branch", FOUR)
    module = zoo_model("two_branch")[0]
    frames = [torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed * 1000 + i))
              for i in range(FRAMES)]
    killed, frozen = rng.sample(list(plan.order), 2)
    faults = {rng.randrange(FRAMES // 4): (killed, signal.SIGKILL),
              rng.randrange(FRAMES // 4, FRAMES // 2): (frozen, signal.SIGSTOP)}
    taken = 0
    with ew.run_stream(plan, iter(frames), backend="local", interval_s=0.02,
                       detect_s=1.0) as outputs:
        for frame, output in enumerate(outputs):
            torch.testing.assert_close(output, module(frames[frame]), rtol=1e-4, atol=1e-5)
            taken += 1
            if frame in faults:
                device, sig = faults[frame]
                worker = next(p for p in multiprocessing.active_children()
                              if p.name == f"edgeweave-{device}")
                os.kill(worker.pid, sig)
    assert taken == FRAMES
    assert [line.split("'")[1] for line in outputs.faults] == [killed, frozen]
    assert not multiprocessing.active_children()
