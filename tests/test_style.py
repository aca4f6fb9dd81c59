"""The code stays ruff-clean (lint and format), so review is about substance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"
PATHS = ["dataloop", "tests", "benchmarks"]


def test_ruff_lint():
    proc = subprocess.run([RUFF, "check", *PATHS], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_ruff_format():
    proc = subprocess.run(
        [RUFF, "format", "--check", *PATHS], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout
