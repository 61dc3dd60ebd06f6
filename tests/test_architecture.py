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
    assert "3 kept, 0 broken" in proc.stdout


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
