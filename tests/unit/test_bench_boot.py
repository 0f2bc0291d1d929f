"""bench.boot_time: the supervisor's start-up lines read off a serial console, and the
ratio of each pair of boots."""

from __future__ import annotations

import pytest
from bench.boot_time import BootSample, pair_ratios, usage_lines

CONSOLE = """\
[   14.69] llmos[232]: 2026-11-23 18:41:45,935 INFO llmos.hw.memory: process memory locked
[   20.88] llmos[232]: 2026-11-23 18:41:52,100 INFO llmos.commands.serve: supervisor code \
loaded 10.39 s after the process started (7.61 s user + 1.83 s system CPU, 6.82 s in this \
thread, 13528 page faults, 195 from disk, waited 2.59 s for cpu, waited 0.18 s for io)
[   29.63] llmos[232]: 2026-11-23 18:42:00,893 INFO llmos.supervisor: start-up finished: \
ready: 2/2 models serving; 19.26 s after the process started (18.75 s user + 4.18 s system \
CPU, 8.24 s in this thread, 66523 page faults, 463 from disk)
[   31.31] boot-report[363]: llmos-boot: multi-user uptime=30.03 supervisor=active
"""


def test_both_milestones_with_the_usage_alone() -> None:
    found = usage_lines(CONSOLE)
    assert found["imports"].startswith("10.39 s after the process started (7.61 s user")
    assert found["imports"].endswith("waited 0.18 s for io)")
    assert found["ready"] == ("19.26 s after the process started (18.75 s user + 4.18 s "
                              "system CPU, 8.24 s in this thread, 66523 page faults, 463 "
                              "from disk)")


def test_a_floor_boot_has_none() -> None:
    assert usage_lines("[ 13.2] boot-report[242]: llmos-boot: multi-user uptime=10.94\n") == {}


def test_only_the_first_start_up_counts() -> None:
    again = CONSOLE.replace("19.26 s after", "3.00 s after")
    assert usage_lines(CONSOLE + again)["ready"].startswith("19.26 s")


def _boot(label: str, ready_s: float | None, report_s: float) -> BootSample:
    return BootSample(label, ready_s, report_s, 0.0, "active" if ready_s else "inactive")


def test_each_ready_boot_over_the_floor_boot_next_to_it() -> None:
    ready = [_boot("ready-0", 45.0, 47.0), _boot("ready-1", 60.0, 62.0)]
    floor = [_boot("floor-0", None, 30.0), _boot("floor-1", None, 37.5)]
    assert pair_ratios(ready, floor) == [1.5, 1.6]


def test_pairs_need_as_many_floor_boots() -> None:
    with pytest.raises(ValueError, match="2 ready boots against 1 floor"):
        pair_ratios([_boot("ready-0", 45.0, 47.0), _boot("ready-1", 46.0, 48.0)],
                    [_boot("floor-0", None, 30.0)])
