"""``GET /health``: status, reasons and per-model state; 200 when ready, 503 otherwise."""

from __future__ import annotations

from aiohttp import web

from llmos.serving.codec import dumps
from llmos.web.api import public
from llmos.web.keys import DATAPLANE


async def health(request: web.Request) -> web.Response:
    h = request.app[DATAPLANE].health()
    return web.Response(status=200 if h.ready else 503, body=dumps(public.health(h.to_dict())),
                        content_type="application/json")


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health)
