"""sd_notify over a datagram socket the test binds, as systemd would."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmos.systemd import Notifier, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def _recv(sock: socket.socket) -> dict[str, str]:
    lines = sock.recv(4096).decode().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_ready_status_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("ready: 1/1 models serving")
    assert _recv(sock) == {"READY": "1", "STATUS": "ready: 1/1 models serving"}
    n.status("serving")
    assert _recv(sock) == {"STATUS": "serving"}
    n.working("loading model a", 2.5)
    assert _recv(sock) == {"STATUS": "loading model a", "EXTEND_TIMEOUT_USEC": "2500000"}
    n.stopping()
    assert _recv(sock)["STOPPING"] == "1"
    n.close()


def test_abstract_socket() -> None:
    name = f"llmos-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ping()
        assert _recv(sock) == {"WATCHDOG": "1"}
    finally:
        sock.close()


def test_silent_outside_systemd() -> None:
    n = Notifier({})
    assert not n.enabled and not n.ready("x") and n.watchdog_s is None


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "4000000"}, 10) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "10"}, 10) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "11"}, 10) is None
    assert watchdog_interval({}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 10) is None


async def test_watchdog_pings_repeatedly(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"})  # every 20 ms
    task = asyncio.create_task(n.watchdog())
    try:
        pings = [await asyncio.to_thread(_recv, sock) for _ in range(3)]
    finally:
        task.cancel()
    assert pings == [{"WATCHDOG": "1"}] * 3


def test_a_receiver_that_does_not_read_never_blocks_us(
        listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    sent = [n.ping() for _ in range(200)]  # far more than the kernel queues for one socket
    assert sent[0] and not all(sent)
