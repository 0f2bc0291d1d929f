"""Start a contestant's server process, wait until it answers, and stop it again.

Each server runs in its own session (process group), so stopping it also stops the worker
processes it spawned (MLServer's inference workers), and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """A server did not come up (exited, or never answered ready)."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: Sequence[str]
    port: int
    ready_path: str = "/v2/health/ready"  # 200 once the server can answer
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    start_timeout_s: float = 300.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, body: bytes | None = None, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET (or a JSON POST when ``body`` is given); 0 when unreachable."""
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def _stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in 20 s; killing its process group", name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def session_cpu_s(sid: int, proc_root: Path = Path("/proc")) -> float:
    """User + system CPU seconds of the live processes of session ``sid`` (a server and the
    workers it spawned), from ``/proc/PID/stat``; a process that ended meanwhile is skipped."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in proc_root.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
        if int(fields[3]) == sid:  # field 6: session
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / ticks


@dataclass(frozen=True)
class Running:
    """A server that answers: its URL, and its process (its session's leader)."""

    base_url: str
    pid: int

    def cpu_s(self) -> float:
        """CPU seconds its processes have used so far."""
        return session_cpu_s(self.pid)


@contextlib.contextmanager
def serving(spec: ServerSpec, log_dir: Path) -> Iterator[Running]:
    """Run ``spec`` until the block ends; yields it once it answers ready (200)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.name}.log"
    env = {**os.environ, **spec.env}
    with log_path.open("wb") as out:
        proc = subprocess.Popen(list(spec.argv), stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=spec.cwd, start_new_session=True)
    try:
        deadline = time.monotonic() + spec.start_timeout_s
        while http_status(spec.base_url + spec.ready_path, timeout_s=2.0)[0] != 200:
            if proc.poll() is not None:
                raise ServerError(f"{spec.name} exited with {proc.returncode} before it was "
                                  f"ready; see {log_path}")
            if time.monotonic() > deadline:
                raise ServerError(f"{spec.name} was not ready after {spec.start_timeout_s:.0f} s;"
                                  f" see {log_path}")
            time.sleep(0.5)
        log.info("%s ready on %s", spec.name, spec.base_url)
        yield Running(spec.base_url, proc.pid)
    finally:
        _stop(proc, spec.name)
