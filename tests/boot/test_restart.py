"""The supervisor killed with SIGKILL on the appliance serves again without help (issue 24.4).

``llmos.service`` does not restart the supervisor within a boot: the fleet key is released
once per boot and PCR 11 extended after it, so a restarted supervisor could not unseal it
again (docs/security.md). A supervisor that dies reboots the machine instead
(``FailureAction=reboot``), and the next boot releases the key afresh.

The kill comes from outside the guest and through no door of its own: the image has no
shell, agent or debug credential to run a command with (adding one would be the hole).
The test presses Alt+SysRq+F on the guest's keyboard (QMP ``send-key``): the kernel's OOM
killer sends SIGKILL to the largest process, the supervisor — as a real out-of-memory kill
would. The image allows that SysRq function (``/usr/lib/sysctl.d/60-llmos-sysrq.conf``:
whoever holds the keyboard can reboot the machine anyway). QEMU runs here with the PS/2
controller and lets the guest reboot instead of exiting (``Boot(keyboard=, reboot=)``).

What it reports (printed, and in docs/security.md): seconds from the kill until /health is
ready again, against a cold start of the same machine (QEMU started to ready), both under
the same accelerator.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from llmos_vm import http, report

from . import guest
from .conftest import EMBEDDING_MODEL, TEXTS, FirstBoot, clone

pytestmark = pytest.mark.boot

_SUPERVISOR_PID = re.compile(r"llmos\[(\d+)\]:")
_OOM_KILL = r"Killed process (\d+) \(([^)]+)\)"


def test_a_supervisor_killed_with_sigkill_serves_again_after_a_reboot(
        first_boot: FirstBoot, lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert first_boot.health["status"] == "ready", first_boot.health["reasons"]
    vm = clone(lab / "restart", first_boot.enrolled)
    with vm.boot("restart", keyboard=True, reboot=True) as boot:
        cold = guest.settled_health(boot, vm.api)
        cold_s = boot.elapsed()
        assert cold["status"] == "ready", cold["reasons"]
        before = boot.console()
        supervisor = _SUPERVISOR_PID.findall(before)[-1]

        killed_at = time.monotonic()
        boot.sysrq("f")
        victim = boot.wait_console(_OOM_KILL, timeout_s=120)
        gone_s = boot.wait_until(
            lambda: (time.monotonic() - killed_at
                     if http.request(f"{vm.api}/health", timeout_s=2) is None else None),
            timeout_s=300, interval_s=0.5, what="the API going away (the reboot)")
        back = guest.settled_health(boot, vm.api)
        back_s = time.monotonic() - killed_at
        served = guest.embeddings(vm.api, EMBEDDING_MODEL, TEXTS)
        fingerprint = guest.admin_fingerprint(boot)
        login = http.request(f"{vm.admin}/login", pin=fingerprint)
        console = boot.console()

    assert victim.group(1) == supervisor, (victim.group(0), supervisor)  # the supervisor died
    assert back["status"] == "ready", back["reasons"]
    assert back["key"]["released"] is True, back["key"]  # released again: a new boot
    assert served.shape == (len(TEXTS), 384)
    # the same admin certificate before and after: kept on the data partition
    assert [fp for _, fp in report.certificates(console)] == [fingerprint] * 2
    assert login is not None and login.status == 200
    figures = {"accelerator": boot.accel, "cold_start_to_ready_s": round(cold_s, 1),
               "sigkill_to_api_gone_s": round(gone_s, 1),
               "sigkill_to_ready_s": round(back_s, 1),
               "ratio_to_cold_start": round(back_s / cold_s, 2)}
    (lab / "restart" / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    with capsys.disabled():
        print(f"\nsupervisor SIGKILL -> READY again: {back_s:.1f} s (the reboot included; "
              f"API gone after {gone_s:.1f} s); cold start -> READY: {cold_s:.1f} s; "
              f"ratio {back_s / cold_s:.2f} ({boot.accel})")
