"""The admin console: its own aiohttp app, on its own listener (server.admin_host:port).

``build_admin_app(plane, options, ...)`` is what the composition root (``llmos.app``) calls.
The app:

- guards every route (``auth.guard``: session + CSRF) and sets security headers;
- serves server-rendered page shells (``pages``) that ``static/admin.js`` fills
  from JSON under /api (``api``, ``models``, ``playground``);
- samples the metrics into the chart ring, keeps a log ring, and provisions the admin
  password, each as a cleanup_ctx pair (``sampler``).

Nothing here is reachable from the inference API's listener.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from llmos.dataplane import DataPlane
from llmos.web.admin import api as admin_api
from llmos.web.admin import auth as admin_auth
from llmos.web.admin import models as admin_models
from llmos.web.admin import osupdate as admin_osupdate
from llmos.web.admin import pages as admin_pages
from llmos.web.admin import playground as admin_playground
from llmos.web.admin.sampler import log_ring, password, sampler
from llmos.web.admin.state import ADMIN, AdminOptions, AdminState, DeviceView, MemoryView
from llmos.web.errors import error_middleware
from llmos.web.keys import DATAPLANE

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC_SUFFIXES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                   ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2"}


def _page_handler(page: admin_pages.Page) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return admin_pages.html(admin_pages.shell(page, request[admin_auth.SESSION].csrf))
    handler.__name__ = f"page_{page.slug}"
    return handler


def static_file(root: Path, relative: str) -> Path | None:
    """The asset ``relative`` under ``root`` if it is one we serve (no escaping the folder,
    no hidden files, only the listed file types), else None."""
    parts = Path(relative).parts
    if not parts or any(p.startswith(".") or p in ("..", "/") for p in parts):
        return None
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()) or path.suffix not in STATIC_SUFFIXES:
        return None
    return path if path.is_file() else None


async def static(request: web.Request) -> web.StreamResponse:
    path = static_file(STATIC_DIR, request.match_info["path"])
    if path is None:
        raise web.HTTPNotFound(text=f"no asset {request.match_info['path']!r}")
    return web.FileResponse(path, headers={"Content-Type": STATIC_SUFFIXES[path.suffix],
                                           "Cache-Control": "no-cache"})


def build_admin_app(plane: DataPlane, options: AdminOptions,
                    devices: DeviceView | None = None, memory: MemoryView | None = None,
                    accelerators_used: Callable[[], dict[str, int]] = dict
                    ) -> web.Application:
    """The admin app on ``plane``. ``devices`` (the DeviceController) and ``memory`` (the
    MemoryPool) feed the Accelerators and Memory pages; without them those pages say so."""
    app = web.Application(
        middlewares=[admin_auth.security_headers, error_middleware(), admin_auth.guard],
        client_max_size=1024 * 1024)  # forms and JSON; uploads stream past this limit
    app[DATAPLANE] = plane
    app[ADMIN] = AdminState.create(options, devices, memory,
                                   accelerators_used=accelerators_used)
    app.cleanup_ctx.extend([log_ring, password, sampler])
    admin_auth.setup(app)
    for page in admin_pages.PAGES:
        app.router.add_get(page.path, _page_handler(page))
    app.router.add_get("/static/{path:.+}", static)
    admin_api.setup(app)
    admin_models.setup(app)
    admin_osupdate.setup(app)
    admin_playground.setup(app, int(plane.registry.config["server.max_body_bytes"]))
    return app
