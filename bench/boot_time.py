"""Boot figures of the appliance image: boot-to-ready against the boot floor, and its size.

    python -m bench.boot_time [--repeat 3] [--accel tcg] [--zstd-level 12]

One VM (build/bench-boot/, made fresh) boots first with the fleet key as provisioning
credential (its enrollment boot, reported apart), then ``--repeat`` times each:

- *ready*: an ordinary boot; the time from starting QEMU until ``/v2/health/ready``
  answers 200 on the forwarded port (every model loaded and warm);
- *floor*: the same disk and TPM with the supervisor skipped (``llmos.floor`` appended to the
  kernel command line by systemd-stub from an SMBIOS type 11 string,
  ``io.systemd.stub.kernel-cmdline-extra``; llmos.service has
  ``ConditionKernelCommandLine=!llmos.floor``: an attacker gains nothing by it, and the
  appended text changes PCR 12, so such a boot never gets the key); the time until
  multi-user.target became
  active: the arrival of the guest's boot report line on the serial console, less the
  guest's own clock from that target to the report's start (the report unit waits for
  systemd to start it; ``llmos_vm.report``).

There is no *restart* boot any more (a supervisor restarted by a unit drop-in credential,
to time a warm start-up): the image honours no drop-ins from credentials, and a supervisor
restarted within a boot cannot have the fleet key released again (docs/security.md).

Both clocks start when QEMU starts, so firmware, kernel and userspace count alike. The ratio
is median(ready) / median(floor); each pair's own ratio (``pair_ratios``) shows how far the
host's drift moved it within the run. ``cpu_work``: how busy the guest's CPUs were in both
kinds of boot, how much more work a ready boot did, and how much more the target would
leave room for; ``start_up``: the supervisor's start to READY=1 and the time the target
would leave it. Sizes: the raw image, and zstd-compressed at the given level; "without
models" subtracts the sealed packs (encrypted, so incompressible).
Results: bench/results/boot.json and a table on stdout. Under TCG every figure scales with
the host's free CPU: the host's load average is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "image"))

from llmos_vm import credentials, http, ovmf, report  # noqa: E402
from llmos_vm.machine import Boot, VmDir  # noqa: E402
from llmos_vm.qemu import Forward  # noqa: E402
from stage_packs import read_list  # noqa: E402

log = logging.getLogger("bench.boot_time")

# The supervisor's own start-up milestones on the console; each ends with what the process
# had used by then (llmos.hw.usage: age, CPU, main thread, page faults, waits).
USAGE_MARKERS = {"imports": "supervisor code loaded ", "ready": "start-up finished: "}
UNIT = "llmos.service"
# Skips the supervisor (ConditionKernelCommandLine=!llmos.floor in llmos.service).
MASK = "llmos.floor"
TARGET = 1.3  # boot-to-ready over the floor (bench/BOOT.md)
GUEST_CPUS = 2  # -smp of every boot measured here, as many as CI's host has cores
TIMEOUT_S = 30 * 60.0
POLL_S = 0.25


# The boot report's figures (llmos_vm.report), in seconds of the guest's clock.
REPORT_SECONDS = ("uptime", "supervisor_start", "supervisor_ready", "multi_user", "cpu_busy",
                  "cpu_idle")


@dataclass(frozen=True)
class BootSample:
    label: str
    ready_s: float | None  # QEMU start -> /v2/health/ready 200 (None: not waited for)
    report_s: float  # QEMU start -> the boot report's timed line on the console
    guest_uptime_s: float  # the guest's own clock at the report's start (no firmware)
    supervisor: str  # the supervisor's unit state in the report
    # The guest's clock when systemd started the supervisor and when it sent READY=1
    # (0: never), and when multi-user.target became active.
    supervisor_start_s: float
    supervisor_ready_s: float
    multi_user_s: float
    # All guest CPUs' busy and idle seconds since the kernel started, when the report started.
    cpu_busy_s: float
    cpu_idle_s: float
    # milestone -> the supervisor's usage text at it (see USAGE_MARKERS)
    supervisor_usage: dict[str, str] | None = None

    @property
    def to_multi_user_s(self) -> float:
        """QEMU start -> multi-user.target active: the report line's arrival less how late
        the report started (its unit is started after the target, in its own sandbox)."""
        return self.report_s - (self.guest_uptime_s - self.multi_user_s)

    @property
    def off_clock_s(self) -> float:
        """QEMU's time off the guest's clock: the firmware before the kernel (and the
        console's and the poll's delay in showing the report line)."""
        return self.report_s - self.guest_uptime_s

    @property
    def busy_share(self) -> float:
        """How much of the guest CPUs' time was spent busy, up to the report's start."""
        return self.cpu_busy_s / (self.cpu_busy_s + self.cpu_idle_s)


def usage_texts(console: str, milestone: str) -> list[str]:
    """The usage text of every line logged at ``milestone`` (USAGE_MARKERS), in order: one
    per start of the supervisor."""
    marker = USAGE_MARKERS[milestone]
    return [line[line.index(marker) + len(marker):].rsplit("; ", 1)[-1].strip()
            for line in console.splitlines() if marker in line]


def usage_lines(console: str) -> dict[str, str]:
    """The first usage text logged at each milestone of USAGE_MARKERS."""
    return {milestone: texts[0] for milestone in USAGE_MARKERS
            if (texts := usage_texts(console, milestone))}


@dataclass(frozen=True)
class StartUp:
    """A start-up's duration and the CPU its process had used by READY=1 (its usage text)."""

    seconds: float  # from the process's start
    cpu_s: float  # user + system, all threads

    @classmethod
    def of(cls, text: str) -> StartUp:
        found = _USAGE.match(text)
        if found is None:
            raise ValueError(f"not a usage text: {text!r}")
        return cls(float(found["age"]), round(float(found["user"]) + float(found["sys"]), 2))


_USAGE = re.compile(r"(?P<age>[\d.]+) s after the process started \((?P<user>[\d.]+) s user "
                    r"\+ (?P<sys>[\d.]+) s system CPU")


def measure(vm: VmDir, label: str, smbios: Sequence[str], api_port: int, accel: str,
            want_ready: bool) -> BootSample:
    """Boot once, poll for readiness and the whole boot report, power down. The report's
    time is when its first (timed) line arrived."""
    api = f"http://127.0.0.1:{api_port}"
    with Boot(vm, label=label, smbios=smbios, forwards=[Forward(api_port, 8000)],
              cpus=GUEST_CPUS, accelerator=accel) as boot:
        ready_s: float | None = None
        report_s: float | None = None
        fields: dict[str, str] | None = None
        deadline = time.monotonic() + TIMEOUT_S
        while fields is None or (want_ready and ready_s is None):
            if not boot.running() or time.monotonic() > deadline:
                raise SystemExit(f"boot {label}: no {'readiness' if fields else 'report'} "
                                 f"after {boot.elapsed():.0f} s; console tail:\n"
                                 f"{boot.console_tail()}")
            now = boot.elapsed()
            if want_ready and ready_s is None:
                reply = http.request(f"{api}/v2/health/ready", timeout_s=2)
                if reply is not None and reply.status == 200:
                    ready_s = now
            if fields is None:
                console = boot.console()
                if report_s is None and report.TIMED in console:
                    report_s = now
                fields = report.fields(console)
            time.sleep(POLL_S)
        usage = usage_lines(boot.console()) or None
    assert report_s is not None and fields is not None
    sample = sample_of(label, ready_s, report_s, fields, usage)
    log.info("%s", sample)
    return sample


def sample_of(label: str, ready_s: float | None, report_s: float, fields: dict[str, str],
              usage: dict[str, str] | None) -> BootSample:
    """A boot's sample from the fields of its report (``llmos_vm.report.fields``)."""
    missing = [key for key in (*REPORT_SECONDS, "supervisor") if key not in fields]
    if missing:
        raise ValueError(f"boot {label}: the boot report has no {', '.join(missing)}: the "
                         "image is older than this benchmark; rebuild it (make image)")
    s = {key: float(fields[key]) for key in REPORT_SECONDS}
    return BootSample(label, ready_s, report_s, s["uptime"], fields["supervisor"],
                      s["supervisor_start"], s["supervisor_ready"], s["multi_user"],
                      s["cpu_busy"], s["cpu_idle"], usage)


def pair_ratios(ready: Sequence[BootSample], floor: Sequence[BootSample]) -> list[float]:
    """ready / floor of each pair of boots run one after the other (``ready-i``, ``floor-i``).
    The host's speed drifts during a run; two boots next to each other share more of it than
    the run's medians do, so the spread of these says how far the ratio itself moved."""
    if len(ready) != len(floor):
        raise ValueError(f"{len(ready)} ready boots against {len(floor)} floor boots")
    return [round(r.ready_s / f.to_multi_user_s, 2) for r, f in zip(ready, floor, strict=True)
            if r.ready_s is not None]


def cpu_work(ready: Sequence[BootSample], floor: Sequence[BootSample], *, target: float,
             cpus: int) -> dict[str, float]:
    """Where the guest's CPU time went, pair by pair (medians over the pairs).

    Under TCG both kinds of boot keep the guest's CPUs busy most of the time (~80 % here), so
    a ready boot gets shorter mainly by doing less work. ``extra_cpu_s`` is the work a ready
    boot did beyond its floor boot: the supervisor's start-up, and whatever else ran after
    multi-user.target, where a floor boot's clock stops. ``extra_cpu_budget_s`` is what it
    could have done and still reported within ``target`` times the floor boot's time, at
    its own busy share and with as much of QEMU's time off the guest's clock."""
    rows = []
    for r, f in zip(ready, floor, strict=True):
        allowed_s = _allowed_guest_s(r, f, target)
        rows.append({
            "floor_cpu_busy_s": f.cpu_busy_s, "floor_busy_share": f.busy_share,
            "ready_cpu_busy_s": r.cpu_busy_s, "ready_busy_share": r.busy_share,
            "extra_cpu_s": r.cpu_busy_s - f.cpu_busy_s,
            "extra_cpu_budget_s": allowed_s * cpus * r.busy_share - f.cpu_busy_s,
        })
    return _medians(rows)


def start_up_room(ready: Sequence[BootSample], floor: Sequence[BootSample], *,
                  target: float) -> dict[str, float]:
    """The supervisor's start to READY=1 on the guest's clock (``start_up_s``), against the
    time ``target`` times the floor boot's would leave it from the same start
    (``start_up_room_s``), pair by pair (medians over the pairs)."""
    return _medians([{"start_up_s": r.supervisor_ready_s - r.supervisor_start_s,
                      "start_up_room_s": _allowed_guest_s(r, f, target) - r.supervisor_start_s}
                     for r, f in zip(ready, floor, strict=True)])


def _allowed_guest_s(ready: BootSample, floor: BootSample, target: float) -> float:
    """The guest's clock at which ``ready`` would have reported within ``target`` times
    ``floor``'s time, with as much of QEMU's time off the guest's clock."""
    return target * floor.to_multi_user_s - ready.off_clock_s


def _medians(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each key's median over the pairs' rows."""
    return {key: round(statistics.median(row[key] for row in rows), 2) for key in rows[0]}


def _start_up_rows(room: dict[str, float]) -> str:
    return (f"| supervisor start to READY=1 (guest clock) / room at {TARGET}x | "
            f"{room['start_up_s']:.1f} / {room['start_up_room_s']:.1f} |\n")


def _work_rows(work: dict[str, float]) -> str:
    return (f"| guest CPUs busy, floor / ready boots | {work['floor_busy_share']:.0%} / "
            f"{work['ready_busy_share']:.0%} |\n"
            f"| guest CPU-s beyond the floor boot's: done / room at {TARGET}x | "
            f"{work['extra_cpu_s']:.1f} / {work['extra_cpu_budget_s']:.1f} |\n")


def zstd_size(path: Path, level: int) -> int:
    """Bytes of ``path`` compressed by zstd (streamed; nothing written)."""
    proc = subprocess.Popen(["zstd", "-q", "-T0", f"-{level}", "-c", str(path)],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        total += len(chunk)
    if proc.wait() != 0:
        raise SystemExit(f"zstd failed on {path}")
    return total


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", type=Path, default=ROOT / "build/image/llmos.raw")
    p.add_argument("--key", type=Path, default=ROOT / "build/keys/fleet.key")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--accel", default="tcg", choices=("tcg", "kvm"))
    p.add_argument("--zstd-level", type=int, default=12)
    p.add_argument("--api-port", type=int, default=18500)
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/boot.json")
    args = p.parse_args(argv)

    load_before = os.getloadavg()
    vm = VmDir(ROOT / "build/bench-boot")
    shutil.rmtree(vm.root, ignore_errors=True)
    vm.prepare(args.image, ovmf.find())
    key = credentials.credential("llmos-provision-key", args.key.read_bytes())
    first = measure(vm, "enroll", [key], args.api_port, args.accel, want_ready=True)
    ready, floor = [], []
    for i in range(args.repeat):
        ready.append(measure(vm, f"ready-{i}", [], args.api_port, args.accel, True))
        floor.append(measure(vm, f"floor-{i}", [credentials.kernel_cmdline_extra(MASK)],
                             args.api_port, args.accel, False))
    if any(s.supervisor == "active" for s in floor):
        raise SystemExit("the floor boots ran the supervisor: systemd-stub ignored the "
                         "SMBIOS kernel-cmdline-extra string")
    if any(s.supervisor != "active" for s in ready):
        raise SystemExit("a ready boot's supervisor was not active")

    ready_s = statistics.median(s.ready_s for s in ready if s.ready_s is not None)
    floor_s = statistics.median(s.to_multi_user_s for s in floor)
    ratio = ready_s / floor_s
    pairs = pair_ratios(ready, floor)
    work = cpu_work(ready, floor, target=TARGET, cpus=GUEST_CPUS)
    room = start_up_room(ready, floor, target=TARGET)
    packs = [ROOT / "build/demo" / f"{n}.sealed" for n in read_list(ROOT / "image/packs.list")]
    packs_bytes = sum(p.stat().st_size for p in packs)
    raw = args.image.stat().st_size
    compressed = zstd_size(args.image, args.zstd_level)
    result = {
        "accel": args.accel, "host": platform.node(), "host_cpus": os.cpu_count(),
        "cpus_guest": GUEST_CPUS, "host_loadavg_before_after": [round(load_before[0], 2),
                                                       round(os.getloadavg()[0], 2)],
        "boot_to_ready_s": round(ready_s, 1), "floor_multi_user_s": round(floor_s, 1),
        "ratio": round(ratio, 2), "pair_ratios": pairs, "target_ratio": TARGET,
        "cpu_work": work, "start_up": room,
        "first_boot_to_ready_s": first.ready_s and round(first.ready_s, 1),
        "samples": [asdict(s) for s in (first, *ready, *floor)],
        "image_raw_bytes": raw, "image_zstd_bytes": compressed, "zstd_level": args.zstd_level,
        "packs_bytes": packs_bytes, "image_zstd_without_models_bytes": compressed - packs_bytes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    mb = 1e6
    sys.stdout.write(
        f"\n| boot ({args.accel}) | seconds |\n|---|---|\n"
        f"| first boot (enrollment) to ready | {first.ready_s:.1f} |\n"
        f"| boot to ready (median of {args.repeat}) | {ready_s:.1f} |\n"
        f"| boot to multi-user, supervisor masked | {floor_s:.1f} |\n"
        f"| ratio (each pair: {min(pairs):.2f}-{max(pairs):.2f}) | {ratio:.2f} |\n"
        f"{_work_rows(work)}{_start_up_rows(room)}\n"
        f"| image | MB |\n|---|---|\n| raw | {raw / mb:.0f} |\n"
        f"| zstd -{args.zstd_level} | {compressed / mb:.0f} |\n"
        f"| zstd, without the sealed packs ({packs_bytes / mb:.0f} MB) | "
        f"{(compressed - packs_bytes) / mb:.0f} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
