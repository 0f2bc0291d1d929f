"""One VM: its persistent directory (disk overlay, OVMF variables, TPM state) and boots of it.

A ``VmDir`` is the machine; a ``Boot`` is one power cycle of it: swtpm and QEMU started,
the console captured to a file, waits with deadlines that fail with the console's tail,
and an ACPI power-down over QMP at the end, so the guest shuts down cleanly (its kernel
sends TPM2_Shutdown) before swtpm exits.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from llmos_vm import accel, credentials, ovmf, qemu
from llmos_vm.disk import create_overlay
from llmos_vm.errors import BootTimeout, VmError
from llmos_vm.qmp import Qmp
from llmos_vm.swtpm import Swtpm, TpmState

log = logging.getLogger(__name__)

T = TypeVar("T")
_ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")
POWERDOWN_TIMEOUT_S = 180.0
PRESS_INTERVAL_S = 15.0


@dataclass(frozen=True)
class VmDir:
    """Everything that persists between boots of one VM."""

    root: Path

    @property
    def disk(self) -> Path:
        return self.root / "disk.qcow2"

    @property
    def ovmf_vars(self) -> Path:
        return self.root / "OVMF_VARS.fd"

    @property
    def tpm(self) -> TpmState:
        return TpmState(self.root / "tpm")

    @property
    def qmp_socket(self) -> Path:
        return self.root / "qmp.sock"

    def serial_log(self, label: str) -> Path:
        return self.root / f"console-{label}.log"

    def prepare(self, base_image: Path, firmware: ovmf.Ovmf,
                disk_bytes: int | None = None) -> None:
        """Create what is missing: overlay on ``base_image`` (the built image, or another
        VM's disk; ``disk_bytes``: the disk's size, see ``create_overlay``), variable
        store, TPM directory."""
        if not base_image.is_file():
            raise VmError(f"no disk image at {base_image}", "build it first: make image")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.disk.exists():
            create_overlay(base_image, self.disk, disk_bytes)
        ovmf.vars_for_vm(firmware, self.ovmf_vars)
        self.tpm.directory.mkdir(parents=True, exist_ok=True)

    def new_tpm(self) -> None:
        """Replace this VM's TPM by a fresh one (a different machine, to the sealed key)."""
        shutil.rmtree(self.tpm.directory, ignore_errors=True)
        self.tpm.directory.mkdir(parents=True)


def strip_console(text: str) -> str:
    return _ANSI.sub("", text)


class Boot:
    """One power cycle of a VM (a context manager); the guest is powered down on exit."""

    def __init__(self, vm: VmDir, *, label: str, forwards: Sequence[qemu.Forward] = (),
                 smbios: Sequence[str] = (), fw_cfg: Sequence[tuple[str, Path]] = (),
                 console_on_terminal: bool = False,
                 firmware: ovmf.Ovmf | None = None, memory_mib: int = 2048,
                 cpus: int = 2, accelerator: str | None = None, keyboard: bool = False,
                 reboot: bool = False) -> None:
        self.vm = vm
        self.label = label
        self.serial_log = None if console_on_terminal else vm.serial_log(label)
        self.accel = accelerator or accel.choose()
        if self.accel == "tcg" and credentials.SETTINGS not in credentials.names(smbios):
            smbios = (*smbios, credentials.emulated_machine_settings())
        fw = firmware or ovmf.find()
        self.config = qemu.VmConfig(
            disk=vm.disk, ovmf_code=fw.code, ovmf_vars=vm.ovmf_vars,
            tpm_socket=vm.tpm.socket, qmp_socket=vm.qmp_socket, serial_log=self.serial_log,
            accel=self.accel, memory_mib=memory_mib, cpus=cpus, forwards=tuple(forwards),
            smbios=tuple(smbios), secure_boot=fw.secure_boot, fw_cfg=tuple(fw_cfg),
            keyboard=keyboard, reboot=reboot)
        self._swtpm = Swtpm(vm.tpm)
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.monotonic() when QEMU was started
        self.clean_shutdown: bool | None = None

    # --- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Boot:
        self._swtpm.__enter__()
        self.vm.qmp_socket.unlink(missing_ok=True)
        if self.serial_log is not None:
            self.serial_log.unlink(missing_ok=True)
        argv = qemu.argv(self.config)
        log.info("booting %s (%s, %s)", self.vm.root, self.label, self.accel)
        log.debug("%s", " ".join(argv))
        self.started_at = time.monotonic()
        try:
            # With the console in a file, QEMU gets its own session: a Ctrl-C on the
            # terminal reaches only us, and we power the guest down cleanly. With the
            # console on the terminal, QEMU owns it (raw mode: Ctrl-C goes to the guest;
            # Ctrl-A c opens QEMU's monitor, where system_powerdown shuts down cleanly).
            on_terminal = self.serial_log is None
            self._proc = subprocess.Popen(
                argv, stdin=None if on_terminal else subprocess.DEVNULL,
                start_new_session=not on_terminal)
        except OSError as exc:
            self._swtpm.stop(timeout_s=0)
            raise VmError(f"cannot start QEMU: {exc}", "apt-get install qemu-system-x86") from exc
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self.running():
                self.clean_shutdown = self.powerdown()
        finally:
            self._swtpm.stop()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def power_cut(self) -> None:
        """Pull the plug: QEMU killed, no shutdown of any kind in the guest."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self.clean_shutdown = False

    def wait_exit(self, timeout_s: float, what: str) -> int:
        """Wait for QEMU to exit by itself (the guest rebooted or powered off: QEMU runs
        with -no-reboot); its exit status. BootTimeout with the console's tail if it does
        not within ``timeout_s``."""
        assert self._proc is not None
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BootTimeout(f"QEMU still running {timeout_s:.0f} s after {what}; console "
                              f"tail:\n{self.console_tail()}",
                              f"full console log: {self.serial_log}") from None

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def powerdown(self, timeout_s: float = POWERDOWN_TIMEOUT_S) -> bool:
        """Press the ACPI power button until QEMU exits. False (and QEMU killed) if the
        guest did not power off in time.

        The button is pressed again every PRESS_INTERVAL_S: a press that comes before
        systemd-logind watches the button (just after boot) is lost, and once the guest
        is shutting down further presses change nothing."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while self._proc.poll() is None and time.monotonic() < deadline:
            try:
                with Qmp(self.vm.qmp_socket) as q:
                    q.execute("system_powerdown")
            except VmError as exc:
                log.debug("ACPI power-down request: %s", exc.message)
            try:
                self._proc.wait(timeout=min(PRESS_INTERVAL_S,
                                            max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                continue
        if self._proc.poll() is None:
            log.warning("guest did not power off within %.0f s; killing QEMU", timeout_s)
            self._proc.kill()
            self._proc.wait()
            self.clean_shutdown = False
        else:
            self.clean_shutdown = self._proc.returncode == 0
        return self.clean_shutdown

    def sysrq(self, key: str) -> None:
        """Alt+SysRq+``key`` on the guest's keyboard (QMP send-key; needs ``keyboard``, and
        the guest's kernel.sysrq must allow that key's function)."""
        keys = [{"type": "qcode", "data": k} for k in ("alt", "sysrq", key)]
        with Qmp(self.vm.qmp_socket) as q:
            q.execute("send-key", keys=keys, **{"hold-time": 200})

    # --- observing the guest -----------------------------------------------------------
    def console(self) -> str:
        if self.serial_log is None or not self.serial_log.exists():
            return ""
        return strip_console(self.serial_log.read_text(errors="replace"))

    def console_tail(self, lines: int = 40) -> str:
        return "\n".join(self.console().splitlines()[-lines:])

    def wait_until(self, probe: Callable[[], T | None], *, timeout_s: float, what: str,
                   interval_s: float = 1.0) -> T:
        """Poll ``probe`` until it returns something other than None; BootTimeout (with the
        console's tail) after ``timeout_s`` or as soon as QEMU exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = probe()
            if result is not None:
                return result
            if not self.running():
                raise BootTimeout(f"QEMU exited (status {self._proc and self._proc.returncode}) "
                                  f"before {what}; console tail:\n{self.console_tail()}",
                                  f"full console log: {self.serial_log}")
            if time.monotonic() > deadline:
                raise BootTimeout(f"no {what} within {timeout_s:.0f} s "
                                  f"({self.accel}); console tail:\n{self.console_tail()}",
                                  f"full console log: {self.serial_log}")
            time.sleep(interval_s)

    def wait_console(self, pattern: str, *, timeout_s: float,
                     interval_s: float = 0.5) -> re.Match[str]:
        regex = re.compile(pattern)
        return self.wait_until(lambda: regex.search(self.console()), timeout_s=timeout_s,
                               what=f"console line matching {pattern!r}", interval_s=interval_s)
