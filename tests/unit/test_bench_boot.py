"""bench.boot_time and llmos_vm.report: the supervisor's start-up lines and the boot report
read off a serial console, the floor's time, the ratio of each pair of boots and where the
guest's CPU time went."""

from __future__ import annotations

import dataclasses

import pytest
from bench.boot_time import (
    BootSample,
    StartUp,
    cpu_work,
    pair_ratios,
    sample_of,
    start_up_room,
    usage_lines,
    usage_texts,
)
from llmos_vm import report

CONSOLE = """\
[   14.69] llmos[232]: 2026-11-23 18:41:45,935 INFO llmos.hw.memory: process memory locked
[   20.88] llmos[232]: 2026-11-23 18:41:52,100 INFO llmos.commands.serve: supervisor code \
loaded 10.39 s after the process started (7.61 s user + 1.83 s system CPU, 6.82 s in this \
thread, 13528 page faults, 195 from disk, waited 2.59 s for cpu, waited 0.18 s for io)
[   29.63] llmos[232]: 2026-11-23 18:42:00,893 INFO llmos.supervisor: start-up finished: \
ready: 2/2 models serving; 19.26 s after the process started (18.75 s user + 4.18 s system \
CPU, 8.24 s in this thread, 66523 page faults, 463 from disk)
[   31.31] boot-report[363]: llmos-boot: multi-user uptime=30.03 cpu_busy=57.75 cpu_idle=2.25
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


def test_every_start_up_of_a_boot_in_order() -> None:
    again = ("[   52.10] llmos[410]: 2026-11-23 18:42:30,001 INFO llmos.supervisor: start-up "
             "finished: ready: 2/2 models serving; warning: memory fallback (hugepages); "
             "10.37 s after the process started (13.93 s user + 1.90 s system CPU, 4.64 s "
             "in this thread)\n")
    first, second = (StartUp.of(t) for t in usage_texts(CONSOLE + again, "ready"))
    assert first == StartUp(seconds=19.26, cpu_s=22.93)
    assert second == StartUp(seconds=10.37, cpu_s=15.83)
    assert usage_texts(CONSOLE, "imports")[0].startswith("10.39 s after")


def test_a_text_that_is_no_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="not a usage text"):
        StartUp.of("ready: 2/2 models serving")


def _boot(label: str, ready_s: float | None, report_s: float, uptime_s: float = 20.0,
          busy_s: float = 36.0, idle_s: float = 4.0,
          multi_user_s: float | None = None) -> BootSample:
    """A sample whose report started as multi-user.target became active, unless told."""
    return BootSample(label, ready_s, report_s, uptime_s, "active" if ready_s else "inactive",
                      supervisor_start_s=0.0, supervisor_ready_s=0.0,
                      multi_user_s=uptime_s if multi_user_s is None else multi_user_s,
                      cpu_busy_s=busy_s, cpu_idle_s=idle_s)


def test_each_ready_boot_over_the_floor_boot_next_to_it() -> None:
    ready = [_boot("ready-0", 45.0, 47.0), _boot("ready-1", 60.0, 62.0)]
    floor = [_boot("floor-0", None, 30.0), _boot("floor-1", None, 37.5)]
    assert pair_ratios(ready, floor) == [1.5, 1.6]


def test_pairs_need_as_many_floor_boots() -> None:
    with pytest.raises(ValueError, match="2 ready boots against 1 floor"):
        pair_ratios([_boot("ready-0", 45.0, 47.0), _boot("ready-1", 46.0, 48.0)],
                    [_boot("floor-0", None, 30.0)])


def test_cpu_work_beyond_the_floor_and_the_room_the_target_leaves() -> None:
    # floor: reported 30 s after QEMU started; ready: 45 s, 10 s of it before the guest's
    # clock, 35 s of guest time on 2 CPUs, 63 of its 70 CPU-s busy (90 %)
    ready = [_boot("ready-0", 44.0, 45.0, 35.0, 63.0, 7.0)]
    floor = [_boot("floor-0", None, 30.0, 20.0, 36.0, 4.0)]
    work = cpu_work(ready, floor, target=1.3, cpus=2)
    assert work["extra_cpu_s"] == 27.0
    assert work["floor_busy_share"] == 0.9 and work["ready_busy_share"] == 0.9
    # within 1.3 x 30 = 39 s of QEMU time: 29 s of guest time, 2 CPUs, 90 % busy = 52.2
    # CPU-s, of which the floor's own 36 leave 16.2
    assert work["extra_cpu_budget_s"] == 16.2


def test_cpu_work_is_the_median_over_the_pairs() -> None:
    ready = [_boot(f"ready-{i}", 44.0, 45.0, 35.0, busy, 70.0 - busy)
             for i, busy in enumerate((60.0, 63.0, 70.0))]
    floor = [_boot(f"floor-{i}", None, 30.0, 20.0, 36.0, 4.0) for i in range(3)]
    assert cpu_work(ready, floor, target=1.3, cpus=2)["extra_cpu_s"] == 27.0


REPORT = """\
[ 31.3] boot-report[363]: llmos-boot: multi-user uptime=30.03 cpu_busy=57.75 cpu_idle=2.25
[ 31.9] boot-report[363]: llmos-boot: units systemd-journald=5.94 tpm2=9.55 llmos-enroll=0.00
[ 32.4] boot-report[363]: llmos-boot: done supervisor=active supervisor_start=10.27 \
supervisor_ready=29.92 multi_user=12.80 addresses=10.0.2.15/24
"""


def test_the_report_is_read_once_its_last_line_is_there() -> None:
    first, units, _ = REPORT.splitlines(keepends=True)
    assert report.fields(first) is None
    assert report.fields(first + units) is None
    fields = report.fields(REPORT)
    assert fields is not None
    assert (fields["uptime"], fields["supervisor"], fields["addresses"]) == (
        "30.03", "active", "10.0.2.15/24")
    assert "systemd-journald" not in fields  # the units line is for people


def test_a_sample_from_the_report() -> None:
    fields = report.fields(REPORT)
    assert fields is not None
    sample = sample_of("ready-0", 40.1, 41.0, fields, None)
    assert (sample.guest_uptime_s, sample.supervisor_start_s, sample.supervisor_ready_s) == (
        30.03, 10.27, 29.92)
    assert (sample.cpu_busy_s, sample.cpu_idle_s, sample.busy_share) == (57.75, 2.25, 0.9625)
    assert sample.multi_user_s == 12.8


def test_the_floor_is_timed_at_multi_user_not_at_the_report() -> None:
    # the report line arrived 24.0 s after QEMU started; the guest read its uptime 11.9 s
    # into its boot, 1.5 s after multi-user.target became active
    floor = _boot("floor-0", None, 24.0, 11.9, multi_user_s=10.4)
    assert floor.to_multi_user_s == 22.5
    assert pair_ratios([_boot("ready-0", 33.75, 35.0)], [floor]) == [1.5]


def test_a_report_lacking_a_figure_is_refused_saying_what_to_do() -> None:
    fields = report.fields(REPORT)
    assert fields is not None
    del fields["multi_user"]
    with pytest.raises(ValueError, match=r"no multi_user: the image is older.*make image"):
        sample_of("floor-0", None, 30.0, fields, None)


def test_the_room_counts_from_the_floor_boots_multi_user() -> None:
    ready = [_boot("ready-0", 44.0, 45.0, 35.0, 63.0, 7.0)]
    # as in the worked example above, but its report started 1.5 s after multi-user.target:
    # 1.3 x 1.5 s less of QEMU time, 2 CPUs, 90 % busy: 3.51 CPU-s less room
    floor = [_boot("floor-0", None, 30.0, 20.0, 36.0, 4.0, multi_user_s=18.5)]
    assert cpu_work(ready, floor, target=1.3, cpus=2)["extra_cpu_budget_s"] == 12.69


def test_the_start_up_and_the_time_the_target_leaves_it() -> None:
    # ready boot: its report 45 s after QEMU started, at 35 s of guest time (10 s off the
    # guest's clock); the supervisor started at 11 s and sent READY=1 at 31 s
    ready = [dataclasses.replace(_boot("ready-0", 44.0, 45.0, 35.0), supervisor_start_s=11.0,
                                 supervisor_ready_s=31.0)]
    floor = [_boot("floor-0", None, 30.0, 20.0)]
    # 1.3 x 30 = 39 s of QEMU time, 29 s of guest time, 18 of them after the start
    assert start_up_room(ready, floor, target=1.3) == {"start_up_s": 20.0,
                                                       "start_up_room_s": 18.0}
