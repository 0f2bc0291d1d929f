"""``GET /metrics``: the Prometheus exposition of this app's own registry."""

from __future__ import annotations

from aiohttp import web

from llmos.web.keys import DATAPLANE


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[DATAPLANE].metrics.render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
