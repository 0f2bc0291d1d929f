from __future__ import annotations

import sys
from pathlib import Path

from bench import machine


def test_cpu_model_and_memory_from_proc_text() -> None:
    cpuinfo = "processor\t: 0\nvendor_id\t: X\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n"
    assert machine.cpu_model(cpuinfo) == "AMD EPYC 7B13"
    assert machine.mem_total_gib("MemTotal:       24596404 kB\nMemFree: 1 kB\n") == 23.5


def test_package_versions_of_this_interpreter() -> None:
    found = machine.package_versions(Path(sys.executable), ["pytest", "surely-not-installed"])
    assert set(found) == {"pytest"}
    assert found["pytest"][0].isdigit()


def test_describe_names_the_machine() -> None:
    d = machine.describe()
    assert int(d["cores"]) >= 1
    assert d["cpu"]
