"""A cap on the open connections of one listener (``server.max_connections``).

aiohttp accepts every connection it is offered: enough idle or trickling clients hold file
descriptors until the process hits ``LimitNOFILE`` and can accept nothing, /health
included. ``ConnectionLimit`` wraps the listener's protocol factory: beyond the cap a
connection is answered ``503`` with ``Retry-After`` and closed at once, and the connections
already open are served as before.

Each connection is a file descriptor, so the cap only holds if the process may open that
many: ``raise_nofile`` lifts the soft ``RLIMIT_NOFILE`` (1024 by default under systemd) to
what the listeners' caps need, up to the hard limit (``LimitNOFILE=`` of llmos.service).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import cast

log = logging.getLogger(__name__)

# Descriptors besides the connections: packs, the TPM, pipes, the runtimes' own files.
FD_RESERVE = 256

_BODY = b'{"error":"too many open connections","hint":"retry later","type":"TooManyConnections"}'
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(_BODY)) + _BODY


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(REFUSAL)
        transport.close()


class _Counted(asyncio.Protocol):
    """Forwards everything to the real protocol; counts the connection out when it ends."""

    def __init__(self, inner: asyncio.Protocol, limit: ConnectionLimit) -> None:
        self._inner = inner
        self._limit = limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._limit.open -= 1
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class ConnectionLimit:
    """A protocol factory: ``factory``'s protocols, at most ``limit`` of them at once."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], limit: int) -> None:
        self._factory = factory
        self.limit = limit
        self.open = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.limit:
            self.refused += 1
            return _Refuse()
        self.open += 1
        return _Counted(self._factory(), self)


def descriptors_needed(max_connections: int, listeners: int) -> int:
    return max_connections * listeners + FD_RESERVE


def nofile_target(soft: int, hard: int, needed: int) -> int:
    """The soft RLIMIT_NOFILE to run with: ``needed`` or more if ``hard`` allows it."""
    if soft == resource.RLIM_INFINITY:
        return soft
    if hard == resource.RLIM_INFINITY:
        return max(soft, needed)
    return max(soft, min(needed, hard))


def raise_nofile(needed: int) -> int:
    """Lift the soft descriptor limit towards ``needed``; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = nofile_target(soft, hard, needed)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target != resource.RLIM_INFINITY and target < needed:
        log.warning("open files are limited to %d, the connection caps need %d: raise "
                    "LimitNOFILE or lower server.max_connections", target, needed)
    return target
