"""The machine and software a run was measured on, printed beside every table."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def cpu_model(cpuinfo: str) -> str:
    """The ``model name`` of /proc/cpuinfo (pure)."""
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown"


def mem_total_gib(meminfo: str) -> float:
    match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    return round(int(match.group(1)) / 2**20, 1) if match else 0.0


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _first_line(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def describe() -> dict[str, str]:
    """CPU model, cores, memory, kernel, and the tools that generate load or compare."""
    return {
        "cpu": cpu_model(_read("/proc/cpuinfo")),
        "cores": str(os.cpu_count()),
        "memory_gib": str(mem_total_gib(_read("/proc/meminfo"))),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _first_line(["wrk", "-v"]).split(" Copyright")[0],
        "openssl": _first_line(["openssl", "version"]),
    }


_VERSIONS_SNIPPET = """
import importlib.metadata as m, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def package_versions(python: Path, names: Sequence[str]) -> Mapping[str, str]:
    """Installed versions of ``names`` in the environment of ``python`` (missing ones left out)."""
    try:
        proc = subprocess.run([str(python), "-c", _VERSIONS_SNIPPET, *names], capture_output=True,
                              text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return {}
    versions: dict[str, str] = json.loads(proc.stdout)
    return versions
