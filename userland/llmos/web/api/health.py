"""The health probes: ``GET /health`` (status, reasons and per-model state), and the
load balancer's pair ``/health/live`` (the process answers: 200) and ``/health/ready``
(200 when ready, 503 with the reasons otherwise)."""

from __future__ import annotations

from aiohttp import web

from llmos.web.api import public, v2
from llmos.web.keys import DATAPLANE, IMAGE_VERSION


async def health(request: web.Request) -> web.Response:
    h = request.app[DATAPLANE].health()
    doc = public.health(h.to_dict())
    if image_version := request.app.get(IMAGE_VERSION):  # a version string, nothing internal
        doc["image_version"] = image_version
    return v2.json_response(doc, 200 if h.ready else 503)


async def ready(request: web.Request) -> web.Response:
    return v2.readiness(request, 503)


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/health/live", v2.live)
    app.router.add_get("/health/ready", ready)
