"""Runs aiohttp apps on their listeners (API and admin) until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from llmos.systemd import Notifier
from llmos.web.connections import ConnectionLimit, descriptors_needed, raise_nofile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    role: str  # "api", "admin"
    app: web.Application
    host: str
    port: int
    tls: ssl.SSLContext | None = None  # HTTPS only, when given
    # A client that disconnects cancels its handler (aiohttp's handler_cancellation): its
    # queued work is dropped, a prompt's prefill interrupted, as if its deadline had passed.
    cancel_on_disconnect: bool = False


class Server:
    """Each listener's app on its address. ``start`` sets them up in order (the API app's
    cleanup context starts the server's parts), ``stop`` tears down in reverse order."""

    def __init__(self, listeners: Sequence[Listener], *, access_log: bool = False,
                 max_connections: int | None = None, idle_timeout_s: float | None = None
                 ) -> None:
        """``max_connections``: open connections per listener (``ConnectionLimit``);
        ``idle_timeout_s``: a kept-alive connection without a request is closed after it."""
        self._plan = tuple(listeners)
        self._access_log = access_log
        self._max_connections = max_connections
        self._idle_timeout_s = idle_timeout_s
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.Server] = []
        self.limits: dict[str, ConnectionLimit] = {}
        self.addresses: dict[str, tuple[str, int]] = {}

    async def _listen(self, listener: Listener, runner: web.AppRunner) -> tuple[str, int]:
        if self._max_connections is None or runner.server is None:
            await web.TCPSite(runner, listener.host, listener.port,
                              ssl_context=listener.tls).start()
            bound = runner.addresses[0]
        else:
            limit = ConnectionLimit(runner.server, self._max_connections)
            self.limits[listener.role] = limit
            server = await asyncio.get_running_loop().create_server(
                limit, listener.host, listener.port, reuse_address=True, ssl=listener.tls)
            self._servers.append(server)
            bound = server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def start(self) -> None:
        idle = 75.0 if self._idle_timeout_s is None else self._idle_timeout_s
        if self._max_connections is not None:
            raise_nofile(descriptors_needed(self._max_connections, len(self._plan)))
        try:
            for listener in self._plan:
                runner = web.AppRunner(listener.app, handle_signals=False,
                                       access_log=log if self._access_log else None,
                                       keepalive_timeout=idle,
                                       handler_cancellation=listener.cancel_on_disconnect)
                await runner.setup()
                self._runners.append(runner)
                self.addresses[listener.role] = await self._listen(listener, runner)
                log.info("%s listening on %s://%s:%d", listener.role,
                         "http" if listener.tls is None else "https",
                         *self.addresses[listener.role])
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        while self._servers:  # stop accepting; the runners close what is open
            self._servers.pop().close()
        while self._runners:
            await self._runners.pop().cleanup()


async def run(server: Server, notifier: Notifier,
              drain: Callable[[], Awaitable[object]] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; then STOPPING=1, ``drain`` (not ready, finish what is in
    flight) and an orderly shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
        log.info("stopping")
        if drain is not None:
            notifier.stopping("draining")
            await drain()
    finally:
        notifier.stopping()
        await server.stop()
        notifier.close()
