"""The style gate: ruff (lint and format) and mypy are green on the whole tree.

They run as tests so that the one test command of the README (and CI, which runs it) enforces them. The
configuration lives in ``pyproject.toml``; the versions are pinned in ``constraints.txt``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    tool = BIN / args[0]
    if not tool.exists():
        pytest.fail(f"{args[0]} is not installed next to {sys.executable}: run `bash scripts/setup.sh`")
    return subprocess.run([str(tool), *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff_lint_is_clean() -> None:
    p = _run("ruff", "check", ".", "--output-format", "concise")
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]


def test_ruff_format_is_clean() -> None:
    p = _run("ruff", "format", "--check", ".")
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]


def test_mypy_is_clean() -> None:
    p = _run("mypy")  # the files and settings of [tool.mypy] in pyproject.toml
    assert p.returncode == 0 and "Success" in p.stdout, p.stdout[-6000:] + p.stderr[-2000:]
