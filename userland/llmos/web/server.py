"""Runs the apps on their listeners (API and admin) until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from llmos.supervisor import Supervisor
from llmos.web.app import build_admin_app, build_api_app

log = logging.getLogger(__name__)


class Server:
    """The API app on server.host:port and the admin app on server.admin_host:admin_port.

    ``start`` sets up the API app first (its cleanup_ctx starts the supervisor), ``stop``
    tears down in reverse order, so the supervisor is the last thing to go.
    """

    def __init__(self, supervisor: Supervisor, *, access_log: bool = False) -> None:
        self.supervisor = supervisor
        cfg = supervisor.config
        self._plan = (
            ("api", build_api_app(supervisor), str(cfg["server.host"]), int(cfg["server.port"])),
            ("admin", build_admin_app(supervisor), str(cfg["server.admin_host"]),
             int(cfg["server.admin_port"])),
        )
        self._access_log = access_log
        self._runners: list[web.AppRunner] = []
        self.addresses: dict[str, tuple[str, int]] = {}

    async def start(self) -> None:
        try:
            for role, app, host, port in self._plan:
                runner = web.AppRunner(app, handle_signals=False,
                                       access_log=log if self._access_log else None)
                await runner.setup()
                self._runners.append(runner)
                await web.TCPSite(runner, host, port).start()
                bound = runner.addresses[0]
                self.addresses[role] = (str(bound[0]), int(bound[1]))
                log.info("%s listening on http://%s:%d", role, *self.addresses[role])
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        while self._runners:
            await self._runners.pop().cleanup()


async def run(supervisor: Supervisor) -> None:
    """Serve until SIGTERM/SIGINT; then STOPPING=1 and an orderly shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = Server(supervisor)
    await server.start()
    try:
        await stop.wait()
        log.info("stopping")
    finally:
        supervisor.notifier.stopping()
        await server.stop()
        supervisor.notifier.close()
