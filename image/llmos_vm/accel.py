"""KVM where it works, TCG otherwise.

``/dev/kvm`` existing proves little: on some hosts QEMU aborts at start (an MSR it cannot
set) or the guest hangs. So the probe boots a real, tiny guest: a 512-byte boot sector
that writes to QEMU's isa-debug-exit port, which ends QEMU with a known status. It takes
well under a second where KVM works, and fails fast or times out where it does not. The
probe's machine has System Management Mode on, as the Secure Boot firmware's needs: some
hosts run KVM guests but not with SMM ("System Management Mode not supported by this
hypervisor", seen on a nested-virtualisation build host), and there TCG it is.
``LLMOS_ACCEL=kvm|tcg`` skips the probe.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from llmos_vm.errors import VmError

log = logging.getLogger(__name__)

EXIT_PORT = 0xF4
EXIT_VALUE = 0x31
EXPECTED_STATUS = (EXIT_VALUE << 1) | 1  # isa-debug-exit ends QEMU with (value << 1) | 1
PROBE_TIMEOUT_S = 10.0


def boot_sector() -> bytes:
    """mov dx, EXIT_PORT; mov al, EXIT_VALUE; out dx, al; hlt; jmp $-1 -- then the signature."""
    code = bytes([0xBA, EXIT_PORT, 0x00, 0xB0, EXIT_VALUE, 0xEE, 0xF4, 0xEB, 0xFD])
    return code + b"\0" * (510 - len(code)) + b"\x55\xaa"


# Under TCG: every feature QEMU can emulate, except
# - the fast-string flags. Without ERMS/FSRM the guest kernel clears pages with its unrolled
#   loop (clear_page_orig) instead of REP STOSB and copies without REP MOVSB. Boots are
#   faster so (README, "Boot time and size": three alternating pairs against plain "max");
#   that this is the reason is inferred.
# - FMA. QEMU emulates each fused multiply-add lane in a helper; without FMA onnxruntime's
#   kernels multiply and add in AVX instead, which TCG translates to host vector code.
#   SmolLM2's one-token warm-up took 12.5 s with FMA and 3.4 s without, in the same image on
#   an Intel Xeon build host (1.5-1.8 s with FMA on the AMD EPYC hosts before it). The
#   guest then runs the kernels of a CPU without FMA, where onnxruntime's int8 MatMul does
#   not prepack and MiniLM loads without giving its weights back (llmos.serving.loading).
TCG_CPU = "max,-erms,-fsrm,-fma"


def cpu_for(accel: str) -> str:
    return "host" if accel == "kvm" else TCG_CPU


def probe_argv(accel: str, disk: Path) -> list[str]:
    """QEMU booting the probe's ``disk`` on a q35 machine with SMM (qemu.argv's machine
    under Secure Boot)."""
    return ["qemu-system-x86_64", "-machine", f"q35,accel={accel},smm=on",
            "-cpu", cpu_for(accel), "-m", "64", "-nodefaults", "-display", "none",
            "-no-reboot", "-device", f"isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x04",
            "-drive", f"file={disk},format=raw,if=ide"]


def probe(accel: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Does a guest run to completion under ``accel``, with SMM?"""
    with tempfile.TemporaryDirectory(prefix="llmos-accel-") as tmp:
        disk = Path(tmp) / "probe.img"
        disk.write_bytes(boot_sector())
        os.truncate(disk, 1 << 20)  # SeaBIOS wants more than one sector
        cmd = probe_argv(accel, disk)
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            log.info("%s probe: no exit within %.0f s", accel, timeout_s)
            return False
    if done.returncode != EXPECTED_STATUS:
        log.info("%s probe: exit %d: %s", accel, done.returncode,
                 done.stderr.decode(errors="replace").strip()[-300:])
    return done.returncode == EXPECTED_STATUS


@functools.cache
def choose() -> str:
    """``kvm`` or ``tcg``: LLMOS_ACCEL if set, else KVM if it passes the probe."""
    wanted = os.environ.get("LLMOS_ACCEL", "auto").lower()
    if wanted in ("kvm", "tcg"):
        return wanted
    if wanted != "auto":
        raise VmError(f"LLMOS_ACCEL={wanted!r} is not kvm, tcg or auto", "unset it or fix it")
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and probe("kvm"):
        return "kvm"
    log.info("KVM unavailable or not working here; using TCG (emulation, slow)")
    return "tcg"
