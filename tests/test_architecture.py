"""The layers read one way (import-linter contracts), and the CLI starts without the heavy libraries."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import small_overrides

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "ray", "open_clip", "transformers")


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    proc = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "6 kept, 0 broken" in proc.stdout


def test_help_status_plan_and_ingest_import_no_heavy_library(tmp_path):
    sets = [arg for o in small_overrides(tmp_path / "w") for arg in ("--set", o)]
    code = textwrap.dedent(f"""
        import json, sys
        from typer.testing import CliRunner
        from pipeline.cli import app
        runner = CliRunner()
        for args in (["--help"], ["stage", "ingest", *{sets!r}], ["status", *{sets!r}], ["plan", *{sets!r}]):
            result = runner.invoke(app, args)
            assert result.exit_code == 0, (args, result.output)
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _python_files(*roots: str) -> list[Path]:
    return [p for r in roots for p in sorted((ROOT / r).rglob("*.py"))]


def test_every_function_is_fifty_lines_or_fewer():
    import ast

    long = []
    for path in _python_files("pipeline", "stages", "models", "bench"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 50:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, long


REGISTRIES = ("stages/tasks.py", "stages/street/datasets/", "stages/synapse/datasets/", "models/volumes/methods/")


def _compared_names(tree, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each registered name compared (==, !=, in, not in) with anything, and each ``.task`` or
    ``.method`` attribute compared with a literal."""
    import ast

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = (node.left, *node.comparators)
        literal = any(isinstance(i, ast.Constant) for side in sides
                      for i in (side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]))
        for side in sides:
            items = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            found += [(node.lineno, i.value) for i in items if isinstance(i, ast.Constant) and i.value in names]
            if literal and isinstance(side, ast.Attribute) and side.attr in ("task", "method"):
                found.append((node.lineno, f".{side.attr}"))
    return found


def test_no_task_dataset_or_method_name_is_compared_outside_the_registries():
    """A new task, dataset or method is a module and a registry line: nothing else tells them apart by name."""
    import ast

    from models.volumes import methods
    from stages import tasks
    from stages.street import datasets
    from stages.synapse.datasets import names as volume_datasets

    names = {*tasks.names(), *datasets.names(), *methods.names(), *volume_datasets()}
    hits = []
    for path in _python_files("pipeline", "stages", "models"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(REGISTRIES):
            continue
        hits += [f"{rel}:{line} {name}" for line, name in _compared_names(ast.parse(path.read_text()), names)]
    assert not hits, hits
    assert _compared_names(ast.parse('if cfg.task == "x" or source in ("gta5", "y"): pass'), {"gta5"}) == [
        (1, ".task"), (1, "gta5")]  # the check itself finds what it looks for
