"""Runs aiohttp apps on their listeners (API and admin) until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from llmos.systemd import Notifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    role: str  # "api", "admin"
    app: web.Application
    host: str
    port: int


class Server:
    """Each listener's app on its address. ``start`` sets them up in order (the API app's
    cleanup context starts the server's parts), ``stop`` tears down in reverse order."""

    def __init__(self, listeners: Sequence[Listener], *, access_log: bool = False) -> None:
        self._plan = tuple(listeners)
        self._access_log = access_log
        self._runners: list[web.AppRunner] = []
        self.addresses: dict[str, tuple[str, int]] = {}

    async def start(self) -> None:
        try:
            for listener in self._plan:
                runner = web.AppRunner(listener.app, handle_signals=False,
                                       access_log=log if self._access_log else None)
                await runner.setup()
                self._runners.append(runner)
                await web.TCPSite(runner, listener.host, listener.port).start()
                bound = runner.addresses[0]
                self.addresses[listener.role] = (str(bound[0]), int(bound[1]))
                log.info("%s listening on http://%s:%d", listener.role,
                         *self.addresses[listener.role])
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        while self._runners:
            await self._runners.pop().cleanup()


async def run(server: Server, notifier: Notifier) -> None:
    """Serve until SIGTERM/SIGINT; then STOPPING=1 and an orderly shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        notifier.stopping()
        await server.stop()
        notifier.close()
