"""The package's public face and its import discipline."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edgeweave

PACKAGE = Path(edgeweave.__file__).parent
# stages in pipeline order: a stage may import only stages before it (DESIGN.md)
STAGES = ("errors", "models", "graph", "cluster", "cost", "units", "simulation", "planners",
          "runtime", "report", "experiments", "demo", "cli")


def test_exported_members():
    assert sorted(edgeweave.__all__) == sorted(
        ["Cluster", "CostModel", "Device", "EdgeweaveError", "Layer", "LayerGraph", "Link",
         "OpKind", "Plan", "Region", "Run", "Stream", "StreamRun", "Timeline", "Unit",
         "__version__", "calibrate", "models", "plan", "profile", "run", "run_stream",
         "simulate", "trace"])
    for name in edgeweave.__all__:
        assert hasattr(edgeweave, name)


def test_import_loads_no_heavy_or_cli_dependencies():
    code = ("import sys, edgeweave; print(sorted(m for m in ('typer', 'rich', 'networkx', "
            "'matplotlib', 'ray', 'scipy', 'pydantic', 'yaml') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def _stage(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def test_stages_import_only_stages_before_them():
    for path in PACKAGE.rglob("*.py"):
        stage = _stage(path)
        if stage not in STAGES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgeweave."):
                imported = node.module.split(".")[1]
                assert STAGES.index(imported) <= STAGES.index(stage), (
                    f"{path.relative_to(PACKAGE)} (stage {stage}) imports {node.module}")


def test_the_runtime_and_re_planning_do_not_import_the_simulator():
    for path in [*(PACKAGE / "runtime").rglob("*.py"), PACKAGE / "planners" / "recover.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("edgeweave.simulation"), path
