"""sd_notify without a library: datagrams to ``$NOTIFY_SOCKET``.

systemd (``Type=notify``) learns from us when start-up is over (``READY=1``), what we are
doing (``STATUS=...``), that we are alive (``WATCHDOG=1`` every ``WATCHDOG_USEC/2``) and
that we are stopping (``STOPPING=1``). Outside systemd (no ``NOTIFY_SOCKET``) every call is
a no-op, so the same code runs in a terminal and in tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes:
    """A leading '@' names a Linux abstract socket (a NUL byte on the wire)."""
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None if not asked for."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner.isdigit() and int(owner) != pid:
        return None  # the watchdog is meant for another process
    return int(usec) / 2 / 1_000_000


class Notifier:
    """Sends sd_notify messages; silent when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _address(raw) if raw else None
        self._sock: socket.socket | None = None
        self.watchdog_s = watchdog_interval(env, os.getpid())

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines (``ready=1`` -> ``READY=1``). False when not sent."""
        if self._address is None:
            return False
        text = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the event loop: a receiver that does not read loses messages.
            self._sock.sendto(text.encode(), socket.MSG_DONTWAIT, self._address)
        except BlockingIOError:
            log.debug("sd_notify: %r is not reading; dropped %r", self._address, text)
            return False
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self._address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready=1, status=status)

    def status(self, status: str) -> bool:
        return self.send(status=status)

    def working(self, status: str, seconds: float) -> bool:
        """STATUS= plus EXTEND_TIMEOUT_USEC=: start-up is busy, allow ``seconds`` more."""
        return self.send(status=status, extend_timeout_usec=int(seconds * 1_000_000))

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(stopping=1, status=status)

    def ping(self) -> bool:
        return self.send(watchdog=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def watchdog(self) -> None:
        """Ping every WATCHDOG_USEC/2 until cancelled (run it as a task).

        The pings come from the event loop itself, so a blocked loop stops them and
        systemd restarts the service: that is the point.
        """
        if self.watchdog_s is None or not self.enabled:
            return
        log.info("systemd watchdog: pinging every %.1f s", self.watchdog_s)
        while True:
            self.ping()
            await asyncio.sleep(self.watchdog_s)


#: Start-up time systemd grants each step (key release, one model's load) beyond
#: TimeoutStartSec=, so a large pack on a slow machine is not killed half-way.
STEP_TIMEOUT_S = 300.0


class Progress:
    """Tells systemd what start-up is doing and, after it, keeps STATUS= current."""

    def __init__(self, working: Callable[[str, float], object],
                 status_line: Callable[[], object]) -> None:
        self.starting = True
        self._working = working
        self._status_line = status_line

    def step(self, what: str) -> None:
        if self.starting:
            self._working(what, STEP_TIMEOUT_S)

    def changed(self) -> None:
        if not self.starting:
            self._status_line()
