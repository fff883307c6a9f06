"""Every ``--json`` command that solves, shows progress or runs workers, run as a user
scripts it (another process, its stdout a file): stdout holds one JSON document and
nothing else — no solver banner, no progress bar. (``models``, ``inspect``, ``demo`` and
``reproduce`` print through the same ``_echo_json``; ``tests/test_cli.py`` reads their JSON
in process, and ``plan`` and ``compare`` here run the planners the demo runs.)"""

from __future__ import annotations

import json
import subprocess
import sys
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
    }


# Runs each command in one Python process (importing torch once), with file descriptor 1
# pointed at a file per command: what C code (a solver's banner) writes lands there too.
_DRIVER = """
import json, os, sys
from edgeweave.cli import app
results = {}
for name, command in json.loads(sys.argv[1]).items():
    path = os.path.join(sys.argv[2], name.replace(" ", "-") + ".stdout")
    sys.stdout.flush()
    saved, target = os.dup(1), os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(target, 1)
    try:
        app(command + ["--json"], standalone_mode=False)
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
    except Exception as error:
        code = f"{type(error).__name__}: {error}"
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(target)
    results[name] = (code, path)
print(json.dumps(results))
"""


def test_every_json_command_prints_only_json_on_stdout(tmp_path):
    done = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(_commands(tmp_path)),
                           str(tmp_path)], capture_output=True, text=True, timeout=400,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    failures = {}
    for name, (code, path) in json.loads(done.stdout.splitlines()[-1]).items():
        text = Path(path).read_text()
        if code != 0:
            failures[name] = f"exit {code}: {done.stderr[-1000:]}"
            continue
        try:
            json.loads(text)  # the whole of stdout, nothing before or after
        except ValueError as error:
            failures[name] = f"{error}: {text[:300]!r}"
    assert failures == {}
