"""Runs each case of umockdev_cases.py in a child process under umockdev-wrapper.

umockdev works by LD_PRELOAD: libudev, sysfs reads and the netlink socket of the child
see an emulated testbed. Each case is its own child, so one crash names its case.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CASES_FILE = HERE / "umockdev_cases.py"
CASES = [n.name for n in ast.parse(CASES_FILE.read_text()).body
         if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")]


def test_there_are_cases() -> None:
    assert len(CASES) >= 3


@pytest.mark.parametrize("case", CASES)
def test_emulated(case: str) -> None:
    wrapper = shutil.which("umockdev-wrapper")
    if wrapper is None:
        pytest.fail("umockdev-wrapper is missing: apt-get install umockdev gir1.2-umockdev-1.0 "
                    "python3-gi (the venv needs --system-site-packages to import gi)")
    done = subprocess.run(
        [wrapper, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{CASES_FILE.relative_to(ROOT)}::{case}"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    report = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert "1 passed" in done.stdout and "skipped" not in done.stdout, report
