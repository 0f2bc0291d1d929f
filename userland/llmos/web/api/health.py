"""The health probes: ``GET /health`` (status, reasons and per-model state), and the
load balancer's pair ``/health/live`` (the process answers: 200) and ``/health/ready``
(200 when ready, 503 with the reasons otherwise)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llmos.serving.codec import dumps
from llmos.web.api import public
from llmos.web.keys import DATAPLANE, IMAGE_VERSION


def _json(doc: dict[str, Any], status: int) -> web.Response:
    return web.Response(status=status, body=dumps(doc), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    h = request.app[DATAPLANE].health()
    doc = public.health(h.to_dict())
    if image_version := request.app.get(IMAGE_VERSION):  # a version string, nothing internal
        doc["image_version"] = image_version
    return _json(doc, 200 if h.ready else 503)


async def live(request: web.Request) -> web.Response:
    return _json({"live": True}, 200)


async def ready(request: web.Request) -> web.Response:
    h = request.app[DATAPLANE].health()
    return _json({"ready": h.ready, "status": h.overall.value,
                  "reasons": [public.text(r) for r in h.reasons]}, 200 if h.ready else 503)


def setup(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
