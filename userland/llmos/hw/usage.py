"""What this process has used so far: age, CPU (user and system), page faults, and how long
its tasks waited for a CPU or for I/O.

Logged at the two start-up milestones (code imported, models ready) so that a slow start can
be told apart: user time is Python and the runtimes, system time and page faults the
kernel's side, and the waits (the kernel's pressure stall information for the service's
control group) say whether it was short of CPUs or of the disk rather than slow itself.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")
SELF_STAT = Path("/proc/self/stat")
UPTIME = Path("/proc/uptime")
RESOURCES = ("cpu", "io")


@dataclass(frozen=True)
class Usage:
    age_s: float | None  # seconds since the process started (None: /proc did not say)
    user_s: float  # all threads
    system_s: float
    thread_s: float  # CPU of the calling thread alone
    minor_faults: int  # served from memory (fresh pages, page cache, copy-on-write)
    major_faults: int  # needed a read from disk
    waits_s: dict[str, float]  # resource -> seconds some task of the cgroup was stalled on it

    def describe(self) -> str:
        waits = "".join(f", waited {s:.2f} s for {r}" for r, s in self.waits_s.items())
        age = "at an unknown age" if self.age_s is None else f"{self.age_s:.2f} s"
        return (f"{age} after the process started ({self.user_s:.2f} s user + "
                f"{self.system_s:.2f} s system CPU, {self.thread_s:.2f} s in this thread, "
                f"{self.minor_faults + self.major_faults} page faults, {self.major_faults} "
                f"from disk{waits})")


def parse_start_ticks(stat: str) -> int:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot. The
    command name (field 2) may hold spaces and parentheses, so fields count from its last ')'."""
    return int(stat[stat.rindex(")") + 1:].split()[19])


def system_uptime_s(uptime: Path = UPTIME) -> float | None:
    """Seconds since the machine booted (None: /proc did not say)."""
    try:
        return float(uptime.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_age(stat: Path = SELF_STAT, uptime: Path = UPTIME) -> float | None:
    """Seconds since this process started, on the boot clock (a wall-clock step at boot, as
    when the time is first synchronised, does not move it); None where /proc did not say."""
    now = system_uptime_s(uptime)
    try:
        started = parse_start_ticks(stat.read_text()) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return None if now is None else max(0.0, now - started)


def parse_cgroup_path(text: str) -> str | None:
    """The unified (v2) hierarchy's path in /proc/self/cgroup ("0::/system.slice/x")."""
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "" and path.startswith("/"):
            return path
    return None


def parse_stall_total(text: str) -> float | None:
    """Seconds in the ``some`` line's total (microseconds) of a ``*.pressure`` file."""
    for line in text.splitlines():
        kind, *fields = line.split()
        if kind != "some":
            continue
        for field in fields:
            key, _, value = field.partition("=")
            if key == "total" and value.isdigit():
                return int(value) / 1e6
    return None


def cgroup_waits(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> dict[str, float]:
    """Stall seconds per resource for this process's cgroup; empty where the kernel has no
    pressure information (no cgroup v2, PSI disabled)."""
    try:
        path = parse_cgroup_path(self_cgroup.read_text())
    except OSError:
        return {}
    if path is None:
        return {}
    waits = {}
    for name in RESOURCES:
        try:
            total = parse_stall_total((root / path.lstrip("/") / f"{name}.pressure").read_text())
        except OSError:
            continue
        if total is not None:
            waits[name] = total
    return waits


def process_usage() -> Usage:
    """This process's usage now; a log line's diagnostics, so it never raises for /proc."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return Usage(process_age(), ru.ru_utime, ru.ru_stime, time.thread_time(), ru.ru_minflt,
                 ru.ru_majflt, cgroup_waits())
