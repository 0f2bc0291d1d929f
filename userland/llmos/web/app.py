"""Builds the aiohttp applications; aiohttp's ``cleanup_ctx`` owns the supervisor's lifecycle.

The API app collects its routes from ``API_MODULES``: each module has
``setup(app: web.Application) -> None`` (add routes, and cleanup contexts if it owns
resources; ``app[SUPERVISOR]`` is set before). A listed module that is not present in
this build is skipped. The admin app comes from ``llmos.web.admin.build_app(supervisor)``
when that module exists, else a placeholder.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from llmos.serving.codec import dumps
from llmos.supervisor import Supervisor
from llmos.web.errors import error_middleware
from llmos.web.keys import SUPERVISOR

log = logging.getLogger(__name__)

API_MODULES = ("llmos.web.health", "llmos.web.v2", "llmos.web.metrics", "llmos.web.openai")
ADMIN_MODULE = "llmos.web.admin"
STARTUP_TASK = web.AppKey("startup_task", asyncio.Task)


def _optional_module(name: str) -> object | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None  # not built in this version
        raise


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start-up runs in the background so /health answers (503, with reasons) meanwhile."""
    sup = app[SUPERVISOR]
    app[STARTUP_TASK] = asyncio.create_task(sup.start(), name="supervisor-start")
    yield
    task = app[STARTUP_TASK]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await sup.stop()


async def _watchdog(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[SUPERVISOR].notifier.watchdog(), name="sd-watchdog")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_api_app(supervisor: Supervisor,
                  modules: Sequence[str] = API_MODULES) -> web.Application:
    """The inference API: /health, /v2, /metrics (and /v1 once llmos.web.openai exists)."""
    app = web.Application(client_max_size=int(supervisor.config["server.max_body_bytes"]),
                          middlewares=[error_middleware()])
    app[SUPERVISOR] = supervisor
    app.cleanup_ctx.append(_watchdog)
    app.cleanup_ctx.append(_lifecycle)
    for name in modules:
        module = _optional_module(name)
        if module is None:
            log.debug("API module %s is not in this build", name)
            continue
        module.setup(app)  # type: ignore[attr-defined]
    return app


async def _admin_placeholder(request: web.Request) -> web.Response:
    doc = {"status": request.app[SUPERVISOR].health().overall.value,
           "admin": "the admin page is not built yet"}
    return web.Response(body=dumps(doc), content_type="application/json")


def build_admin_app(supervisor: Supervisor, module_name: str = ADMIN_MODULE) -> web.Application:
    """The admin listener's app: ``<module_name>.build_app(supervisor)`` if that exists."""
    module = _optional_module(module_name)
    if module is not None:
        app: web.Application = module.build_app(supervisor)  # type: ignore[attr-defined]
        return app
    app = web.Application(middlewares=[error_middleware()])
    app[SUPERVISOR] = supervisor
    app.router.add_get("/", _admin_placeholder)
    return app
