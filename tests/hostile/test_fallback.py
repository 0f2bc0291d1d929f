"""Under systemd, a configuration that does not load leaves ``llmos serve`` up, serving
/health with the reason and READY=1, instead of exiting into a restart loop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from .conftest import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> requests.Response:
    """``url``'s answer once the listener is up (it comes just after READY=1)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return requests.get(url, timeout=5)
        except requests.ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.2)


@contextmanager
def _under_systemd(tmp_path: Path, *args: str,
                   **environ: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``llmos serve ARGS`` with a notify socket, as systemd starts it, ``environ`` added
    to the environment: (the READY=1 message, the process) once it says ready;
    terminated on the way out."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(120)
    env = {**os.environ, "PYTHONPATH": str(REPO / "userland"),
           "NOTIFY_SOCKET": str(tmp_path / "notify"), **environ}
    proc = subprocess.Popen([sys.executable, "-m", "llmos", "serve", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while "READY=1" not in (message := notify.recv(4096).decode()):
            pass
        yield message, proc
    finally:
        proc.terminate()
        proc.wait(30)
        notify.close()


def test_a_broken_configuration_is_served_as_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "llmos.toml"
    bad.write_text("[server]\nmax_body_bytes = -1\n")
    port = _free_port()
    with _under_systemd(tmp_path, "--config", str(bad), "--port", str(port)) as (message, proc):
        assert "configuration error" in message, message
        r = _get(f"http://127.0.0.1:{port}/health")
        assert r.status_code == 503
        assert "server.max_body_bytes" in r.json()["reasons"][0], r.text
        assert requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5).ok
        assert requests.get(f"http://127.0.0.1:{port}/health/live", timeout=5).ok
        ready = requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert "server.max_body_bytes" in ready.json()["reasons"][0], ready.text
        assert proc.poll() is None  # still up


def test_a_certificate_that_does_not_load_is_served_as_the_reason(tmp_path: Path) -> None:
    """A bad admin certificate (a credential on the appliance) fails when the listeners are
    made, after the configuration loaded: the same answer, not an exit (a reboot there),
    on the address the configuration file names (the appliance's, not the default)."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "llmos-admin-tls-cert").write_text("-----BEGIN CERTIFICATE-----\nnot one\n")
    (creds / "llmos-admin-tls-key").write_text("no key either\n")
    port = _free_port()
    conf = tmp_path / "llmos.toml"
    conf.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\nport = {port}\n'
                    f'admin_port = {_free_port()}\n\n[admin]\ntls = true\n\n[memory]\n'
                    'lock_process = false\n')
    with _under_systemd(tmp_path, "--config", str(conf),
                        CREDENTIALS_DIRECTORY=str(creds)) as (message, proc):
        assert "admin TLS certificate" in message, message
        ready = _get(f"http://127.0.0.1:{port}/health/ready")
        assert ready.status_code == 503, ready.text
        assert "does not load" in ready.json()["reasons"][0], ready.text
        assert str(tmp_path) not in ready.text  # no paths for anonymous callers
        assert proc.poll() is None  # still up


def test_by_hand_a_broken_configuration_still_exits(tmp_path: Path) -> None:
    bad = tmp_path / "llmos.toml"
    bad.write_text("[server]\nmax_body_bytes = -1\n")
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    env["PYTHONPATH"] = str(REPO / "userland")
    done = subprocess.run([sys.executable, "-m", "llmos", "serve", "--config", str(bad)],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "max_body_bytes" in done.stderr + done.stdout
