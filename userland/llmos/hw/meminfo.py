"""Kernel memory counters: /proc/meminfo and /proc/self/{status,smaps_rollup} (parsers
are pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MEMINFO = Path("/proc/meminfo")
SELF_STATUS = Path("/proc/self/status")
SELF_SMAPS_ROLLUP = Path("/proc/self/smaps_rollup")


def parse_kv(text: str) -> dict[str, int]:
    """ "Key:   123 kB" lines -> {"Key": bytes}; unit-less counts stay counts."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        value = int(parts[0])
        out[key.strip()] = value * KIB if parts[1:2] == ["kB"] else value
    return out


@dataclass(frozen=True)
class HugepageCounters:
    page_bytes: int
    total: int  # pages
    free: int  # pages not in use (some may be reserved by mappings not yet touched)
    reserved: int  # promised to mappings, not yet faulted
    surplus: int

    @property
    def available(self) -> int:
        """Pages a new mapping can still get."""
        return max(0, self.free - self.reserved)

    @property
    def used(self) -> int:
        return self.total - self.free


def hugepages_from(meminfo: Mapping[str, int]) -> HugepageCounters:
    return HugepageCounters(
        page_bytes=meminfo.get("Hugepagesize", 2048 * KIB),
        total=meminfo.get("HugePages_Total", 0),
        free=meminfo.get("HugePages_Free", 0),
        reserved=meminfo.get("HugePages_Rsvd", 0),
        surplus=meminfo.get("HugePages_Surp", 0),
    )


def read_meminfo(path: Path = MEMINFO) -> dict[str, int]:
    return parse_kv(path.read_text())


def read_hugepages(path: Path = MEMINFO) -> HugepageCounters:
    return hugepages_from(read_meminfo(path))


def locked_bytes(rollup: Path = SELF_SMAPS_ROLLUP, status: Path = SELF_STATUS) -> int:
    """Resident bytes this process has pinned (mlock, mlockall); hugetlb pages not counted.

    smaps_rollup's ``Locked`` counts the resident pages of locked mappings. ``VmLck`` (the
    fallback where smaps_rollup is missing) counts whole locked mappings: under
    ``mlockall(MCL_ONFAULT)`` that includes address space never touched."""
    try:
        return parse_kv(rollup.read_text()).get("Locked", 0)
    except OSError:
        return parse_kv(status.read_text()).get("VmLck", 0)
