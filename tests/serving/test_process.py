"""``llmos serve`` as systemd runs it: a real process, a real port, sd_notify, SIGTERM.

Also the issue's check that no plaintext model file appears on disk while serving.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench.model_update import Server

from .conftest import Packs, standard_config
from .plaintext import contains, files_with


def _get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post(port: int, path: str, doc: Any) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(doc).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Notifications:
    """Every sd_notify datagram the server sends, read on a thread as systemd would."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list[dict[str, str]] = []
        sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                raw = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(dict(line.split("=", 1) for line in raw.splitlines()))

    def wait_for(self, key: str, timeout_s: float = 60) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m in list(self.messages):
                if key in m:
                    return m
            time.sleep(0.02)
        raise AssertionError(f"no {key} in {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working directory, HOME and TMPDIR of the server's own."""
    for d in ("cwd", "home", "tmp", "state"):
        (tmp_path / d).mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LLMOS_")},
           "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
           "PYTHONUNBUFFERED": "1"}
    yield tmp_path, env


def test_serve_notifies_systemd_serves_and_writes_no_plaintext(
        packs: Packs, sandbox: tuple[Path, dict[str, str]],
        notify_socket: tuple[socket.socket, str]) -> None:
    root, env = sandbox
    sock, notify_path = notify_socket
    notes = Notifications(sock)
    cfg = standard_config(packs, root)
    env = {**env, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "200000"}
    since = time.time() - 1
    server = Server(cfg, env, root / "cwd", ["--state-dir", str(root / "state")])
    try:
        port = server.port("api")
        ready = notes.wait_for("READY")
        assert ready["READY"] == "1" and ready["STATUS"].startswith("degraded: 3/5")
        assert any(m.get("STATUS", "").startswith("loading model") for m in notes.messages)
        notes.wait_for("WATCHDOG")

        status, health = _get(port, "/health")
        assert status == 200 and health["models"]["alpha"]["state"] == "READY"
        x = np.ones((2, 4), np.float32)
        status, doc = _post(port, "/v2/models/alpha/infer", {"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}]})
        assert status == 200
        y = np.array(doc["outputs"][0]["data"]).reshape(2, 3)
        np.testing.assert_allclose(y, x @ packs.w + packs.b, rtol=1e-5, atol=1e-5)
        status, _ = _post(port, "/v2/models/slow/infer", {"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 512], "data": [0.5] * 512}]})
        assert status == 200
        admin = server.port("admin")
        assert admin != port

        # While serving: no file anywhere the process can write holds the plaintext.
        fragments = (packs.w.tobytes(), packs.slow_w)
        assert not any(contains(p, *fragments) for p in packs.dir.iterdir()), \
            "a sealed pack holds plaintext: the check itself would be meaningless"
        roots = [root, Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path.cwd(),
                 Path.home() / ".cache"]
        assert files_with(fragments, roots, since) == []
    finally:
        code = server.stop()
    assert code == 0, "".join(server.lines)
    assert notes.wait_for("STOPPING", timeout_s=10)["STOPPING"] == "1"
    notes.close()
    log = "".join(server.lines)
    assert "model broken FAILED" in log and "model wrongkey FAILED" in log
    assert "Traceback" not in log  # failures are reported, not crashed through


def test_serve_refuses_a_bad_config_with_a_hint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = -1\n")
    proc = subprocess.run([sys.executable, "-m", "llmos", "serve", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "server.port" in proc.stderr and "hint:" in proc.stderr


def test_serve_flags_come_from_the_settings_table() -> None:
    from llmos import config

    proc = subprocess.run([sys.executable, "-m", "llmos", "serve", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for s in config.SETTINGS:
        if s.flag:
            assert s.flag in proc.stdout, s.flag


def test_the_plaintext_scan_finds_a_planted_file(packs: Packs, tmp_path: Path) -> None:
    """The scan above can fail: a file holding the plaintext is found."""
    since = time.time() - 1
    planted = tmp_path / "deep" / "er" / "leak.bin"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(os.urandom(3 * 1024 * 1024 - 10) + packs.slow_w + b"tail")
    assert files_with((packs.w.tobytes(), packs.slow_w), [tmp_path], since) == [planted]
