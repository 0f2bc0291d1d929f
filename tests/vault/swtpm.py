"""A software TPM 2.0 (swtpm) for tests: start, use, shut down cleanly.

Reusable outside ``tests/vault``::

    from tests.vault.swtpm import Swtpm
    with Swtpm() as tpm:                      # data socket for systemd-creds / tpm2-tools
        subprocess.run(["systemd-creds", ..., f"--tpm2-device={tpm.device}"])
    with Swtpm(state_dir=d, server=False) as tpm:   # control socket only, for QEMU:
        qemu_args = ["-chardev", f"socket,id=chrtpm,path={tpm.ctrl}", ...]

``stop()`` sends ``tpm2_shutdown -c`` first (server mode), so restarting a persistent state
never counts as an unclean shutdown (three of those lock the TPM out for 1000 s).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

TOOLS = ("swtpm", "tpm2_shutdown", "tpm2_flushcontext", "tpm2_pcrextend")


def missing_tools(extra: tuple[str, ...] = ()) -> list[str]:
    return [t for t in (*TOOLS, *extra) if shutil.which(t) is None]


class Swtpm:
    """One swtpm process. ``state_dir`` keeps the TPM's state (a short temp dir by default:
    unix socket paths must stay under 108 bytes)."""

    def __init__(self, state_dir: Path | None = None, server: bool = True) -> None:
        self._own_dir = state_dir is None
        self.state_dir = Path(tempfile.mkdtemp(prefix="swtpm-")) if state_dir is None \
            else state_dir
        self.server = server
        self.sock = self.state_dir / "sock"
        self.ctrl = self.state_dir / "sock.ctrl"  # where the swtpm TCTI looks for it
        self.log = self.state_dir / "swtpm.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def device(self) -> str:
        """The ``--tpm2-device=`` / TCTI string of this TPM's data socket."""
        return f"swtpm:path={self.sock}"

    def start(self, timeout_s: float = 10.0) -> Swtpm:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.state_dir}",
                "--ctrl", f"type=unixio,path={self.ctrl}", "--log", f"file={self.log}"]
        if self.server:
            argv += ["--server", f"type=unixio,path={self.sock}", "--flags", "startup-clear"]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wanted = [self.ctrl, self.sock] if self.server else [self.ctrl]
        deadline = time.monotonic() + timeout_s
        while not all(p.exists() for p in wanted):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = self._log_text()
                self.stop()
                raise RuntimeError(f"swtpm did not start: {log}")
            time.sleep(0.01)
        return self

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def tpm2(self, tool: str, *args: str) -> str:
        """Run ``tpm2_<tool> args`` against this TPM (then flush: swtpm has no resource
        manager); return its stdout."""
        env = {**os.environ, "TPM2TOOLS_TCTI": self.device}
        try:
            done = subprocess.run([f"tpm2_{tool}", *args], env=env, capture_output=True,
                                  text=True, check=True, timeout=30)
        finally:
            subprocess.run(["tpm2_flushcontext", "-t"], env=env, capture_output=True,
                           check=False, timeout=30)
        return done.stdout

    def pcrextend(self, pcr: int, data: bytes) -> None:
        self.tpm2("pcrextend", f"{pcr}:sha256={hashlib.sha256(data).hexdigest()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self.server and proc.poll() is None:
            subprocess.run(["tpm2_shutdown", "-c"], capture_output=True, check=False,
                           timeout=30, env={**os.environ, "TPM2TOOLS_TCTI": self.device})
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> Swtpm:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
