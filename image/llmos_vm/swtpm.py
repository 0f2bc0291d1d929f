"""A software TPM 2.0 (swtpm) per VM, with persistent state in the VM's directory.

The state directory is the TPM: its seeds, hence every key sealed to it. Keeping one per
VM under build/ lets a second boot release what the first boot sealed; a fresh directory
is a new TPM. swtpm runs with ``--terminate`` (it exits when QEMU disconnects), and the
guest shuts down through ACPI so that its kernel sends TPM2_Shutdown: a TPM that loses
power without it counts a dictionary-attack strike and locks out after a few.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from llmos_vm.errors import VmError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TpmState:
    directory: Path

    @property
    def socket(self) -> Path:  # control channel QEMU's tpm-emulator connects to
        return self.directory / "swtpm.sock"

    @property
    def log(self) -> Path:
        return self.directory / "swtpm.log"

    def manufactured(self) -> bool:
        return (self.directory / "tpm2-00.permall").exists()


def manufacture_argv(state: TpmState) -> list[str]:
    """Create a new TPM's state, as a vendor would: only the SHA-256 PCR bank is active
    (what current hardware TPMs ship), which also spares the firmware and systemd-stub
    hashing everything four times over under emulation."""
    return ["swtpm_setup", "--tpm2", "--tpmstate", str(state.directory.resolve()),
            "--pcr-banks", "sha256", "--not-overwrite"]


def argv(state: TpmState) -> list[str]:
    return ["swtpm", "socket", "--tpm2",
            "--tpmstate", f"dir={state.directory.resolve()}",
            "--ctrl", f"type=unixio,path={state.socket.resolve()}",
            "--log", f"file={state.log.resolve()},level=1",
            "--terminate"]


class Swtpm:
    """Runs swtpm for one VM boot (a context manager)."""

    def __init__(self, state: TpmState) -> None:
        self.state = state
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Swtpm:
        if shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None:
            raise VmError("swtpm is not installed", "apt-get install swtpm swtpm-tools "
                          "(make deps does)")
        self.state.directory.mkdir(parents=True, exist_ok=True)
        if not self.state.manufactured():
            done = subprocess.run(manufacture_argv(self.state), capture_output=True, text=True,
                                  check=False)
            if done.returncode != 0:
                raise VmError(f"swtpm_setup failed for {self.state.directory}: "
                              f"{done.stdout.strip()} {done.stderr.strip()}",
                              "apt-get install swtpm-tools; check /etc/swtpm_setup.conf")
        self.state.socket.unlink(missing_ok=True)
        # Its own session: a Ctrl-C on the terminal must not kill the TPM under the guest.
        self._proc = subprocess.Popen(argv(self.state), stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.state.socket.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.state.log.read_text(errors="replace")[-2000:] \
                    if self.state.log.exists() else ""
                raise VmError(f"swtpm did not start for {self.state.directory}: {tail.strip()}",
                              "check that the state directory is writable and not in use")
            time.sleep(0.05)
        log.debug("swtpm %d serving %s", self._proc.pid, self.state.socket)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Wait for swtpm to exit (it does when QEMU disconnects); terminate it otherwise."""
        if self._proc is None:
            return
        try:
            self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("swtpm %d still running after QEMU; terminating it", self._proc.pid)
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
