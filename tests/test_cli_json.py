"""Every ``--json`` command that solves, shows progress or runs workers, run as a user
scripts it (a subprocess, stdout piped): stdout holds one JSON document and nothing else —
no solver banner, no progress bar. (``models`` and ``inspect`` print through the same
``_echo_json`` and nothing else; ``tests/test_cli.py`` reads their JSON in process.)"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLUSTER = "rpi4b+edge-server@wifi"


def _commands(tmp):
    plan = str(tmp / "plan.json")
    return {
        "profile on devices": ["profile", "line", "-c", CLUSTER, "-o", str(tmp / "profiles"),
                               "--repeats", "1"],
        # edgeflow solves LPs with HiGHS, whose first solver prints a banner on stdout
        "plan": ["plan", "two_branch", "-c", CLUSTER, "-p", "edgeflow", "-o", plan],
        "simulate": ["simulate", plan, "--frames", "2"],
        "compare": ["compare", "line", "-c", CLUSTER],
        "run": ["run", "line", "-c", CLUSTER, "--frames", "2", "--check"],
        "calibrate": ["calibrate", "line", "-c", CLUSTER, "-o", str(tmp / "calibrated.yaml"),
                      "--repeats", "1"],
        "reproduce": ["reproduce", "wang2021", "--out", str(tmp / "wang2021.md")],
        "demo": ["demo", "--gantt", str(tmp / "demo.png"), "--host-model", "line"],
    }


def _parses(command: list[str], cwd: Path) -> str | None:
    """None when the command exits 0 and its whole stdout is one JSON document, else why not."""
    done = subprocess.run([sys.executable, "-m", "edgeweave.cli", *command, "--json"],
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    if done.returncode != 0:
        return f"exit {done.returncode}: {done.stderr[-1000:]}"
    try:
        json.loads(done.stdout)  # the whole of stdout, nothing before or after
    except ValueError as error:
        return f"{error}: {done.stdout[:300]!r}"
    return None


def test_every_json_command_prints_only_json_on_stdout(tmp_path):
    commands = _commands(tmp_path)
    simulate = commands.pop("simulate")  # reads the plan that "plan" saves
    # two at a time: most of each run is starting Python and importing torch
    with ThreadPoolExecutor(2) as pool:
        failures = dict(zip(commands, pool.map(lambda c: _parses(c, tmp_path),
                                               commands.values())))
    failures["simulate"] = _parses(simulate, tmp_path)
    assert {name: why for name, why in failures.items() if why} == {}
