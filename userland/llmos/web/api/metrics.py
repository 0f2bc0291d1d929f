"""``GET /metrics``: the Prometheus exposition of this app's own registry."""

from __future__ import annotations

import asyncio

from aiohttp import web

from llmos.web.keys import DATAPLANE


async def metrics(request: web.Request) -> web.Response:
    """Rendered in a worker thread: the resource gauges read /proc (milliseconds), which
    would stall the requests on the event loop."""
    accept = request.headers.get("Accept")
    body, content_type = await asyncio.to_thread(request.app[DATAPLANE].metrics.render,
                                                 accept)
    return web.Response(body=body, headers={"Content-Type": content_type})


def setup(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics)
