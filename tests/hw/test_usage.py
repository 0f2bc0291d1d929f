"""The process usage line logged at start-up: parsers of /proc/self/cgroup and *.pressure,
the cgroup reader against a fake tree, and a real reading of this process."""

from __future__ import annotations

import os
from pathlib import Path

from llmos.hw import usage
from llmos.hw.usage import (
    Usage,
    cgroup_waits,
    parse_cgroup_path,
    parse_stall_total,
    parse_start_ticks,
    process_age,
    system_uptime_s,
)

PRESSURE = ("some avg10=1.50 avg60=0.20 avg300=0.00 total=2790123\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n")


def test_start_ticks_past_a_command_name_with_spaces_and_parentheses() -> None:
    fields = " ".join(str(n) for n in range(3, 53)).replace("3", "S", 1)  # fields 3..52
    stat = f"1234 (llmos (x) y) {fields}\n"
    assert parse_start_ticks(stat) == 22


def test_process_age_on_the_boot_clock(tmp_path: Path) -> None:
    stat, uptime = tmp_path / "stat", tmp_path / "uptime"
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S"] + ["0"] * 18 + [str(10 * ticks)] + ["0"] * 30  # starttime: 10 s after boot
    stat.write_text("99 (python3) " + " ".join(fields) + "\n")
    uptime.write_text("12.50 3.00\n")
    assert process_age(stat, uptime) == 2.5


def test_cgroup_path_of_the_unified_hierarchy() -> None:
    assert parse_cgroup_path("0::/system.slice/llmos.service\n") == "/system.slice/llmos.service"


def test_cgroup_path_on_a_hybrid_host_takes_the_v2_line() -> None:
    text = "4:memory:/user.slice\n1:cpu:/\n0::/user.slice/session-1.scope\n"
    assert parse_cgroup_path(text) == "/user.slice/session-1.scope"


def test_cgroup_path_absent_on_a_v1_only_host() -> None:
    assert parse_cgroup_path("4:memory:/x\n1:name=systemd:/x\n") is None


def test_stall_total_is_the_some_line_in_seconds() -> None:
    assert parse_stall_total(PRESSURE) == 2.790123


def test_stall_total_missing_or_malformed() -> None:
    assert parse_stall_total("full avg10=0.00 total=5\n") is None
    assert parse_stall_total("some avg10=0.00 total=x\n") is None
    assert parse_stall_total("") is None


def _tree(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    group = tmp_path / "cg/system.slice/llmos.service"
    group.mkdir(parents=True)
    for name, text in files.items():
        (group / name).write_text(text)
    self_cgroup = tmp_path / "self-cgroup"
    self_cgroup.write_text("0::/system.slice/llmos.service\n")
    return tmp_path / "cg", self_cgroup


def test_cgroup_waits_reads_the_process_cgroup(tmp_path: Path) -> None:
    root, self_cgroup = _tree(tmp_path, {"cpu.pressure": PRESSURE,
                                         "io.pressure": "some avg10=0 total=250000\n"})
    assert cgroup_waits(root, self_cgroup) == {"cpu": 2.790123, "io": 0.25}


def test_cgroup_waits_skip_what_the_kernel_does_not_offer(tmp_path: Path) -> None:
    root, self_cgroup = _tree(tmp_path, {"cpu.pressure": PRESSURE})  # no io.pressure
    assert cgroup_waits(root, self_cgroup) == {"cpu": 2.790123}
    assert cgroup_waits(root, tmp_path / "missing") == {}


def test_describe_names_every_figure() -> None:
    line = Usage(10.96, 7.72, 2.12, 6.99, 13330, 195, {"cpu": 1.97, "io": 0.18}).describe()
    assert line == ("10.96 s after the process started (7.72 s user + 2.12 s system CPU, "
                    "6.99 s in this thread, 13525 page faults, 195 from disk, "
                    "waited 1.97 s for cpu, waited 0.18 s for io)")
    assert "waited" not in Usage(1.0, 0.5, 0.1, 0.4, 10, 0, {}).describe()


def test_an_unreadable_proc_leaves_the_age_out(tmp_path: Path) -> None:
    uptime = tmp_path / "uptime"
    uptime.write_text("12.50 3.00\n")
    assert system_uptime_s(uptime) == 12.5
    assert system_uptime_s(tmp_path / "missing") is None
    assert process_age(tmp_path / "missing", uptime) is None
    assert process_age(uptime, uptime) is None  # not a stat line
    line = Usage(None, 0.5, 0.1, 0.4, 10, 0, {}).describe()
    assert line.startswith("at an unknown age after the process started (0.50 s user")


def test_process_usage_reads_this_process() -> None:
    sink = bytearray(8 << 20)  # fault in some pages and spend some CPU
    for i in range(0, len(sink), 4096):
        sink[i] = 1
    now = usage.process_usage()
    assert now.age_s is not None and 0 < now.age_s < 3600
    assert now.user_s + now.system_s > 0
    assert 0 < now.thread_s <= now.user_s + now.system_s + 0.05
    assert now.minor_faults >= len(sink) // 4096
