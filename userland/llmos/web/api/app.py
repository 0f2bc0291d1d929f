"""The inference API's aiohttp application: routes mounted on the data plane it is given.

It starts nothing: the composition root (``llmos.app``) hangs the server's start and stop
on this app's cleanup context.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from llmos.dataplane import DataPlane
from llmos.web.admission import LIMITS, Admission, Limits
from llmos.web.api import embeddings, health, metrics, openai, openapi, v2
from llmos.web.errors import error_middleware
from llmos.web.keys import DATAPLANE, IMAGE_VERSION


def build_api_app(plane: DataPlane, max_body_bytes: int,
                  limits: Limits | None = None,
                  middlewares: Sequence[Middleware] = (),
                  image_version: str | None = None) -> web.Application:
    """/health, /v2 (OIP), /metrics and /v1 (OpenAI, embeddings included) on ``plane``;
    ``middlewares`` run inside the error mapping (drain, API keys), before ``limits``: the
    global cap on work in flight and the body deadline (``llmos.web.admission``), so a
    request without a valid key takes no share of it. ``image_version``: the booted image's
    (``GET /v2`` and ``/health`` say it)."""
    stack = [error_middleware(), *middlewares]
    if limits is not None:
        stack.append(Admission(limits).middleware())
    app = web.Application(client_max_size=max_body_bytes, middlewares=stack)
    app[DATAPLANE] = plane
    app[IMAGE_VERSION] = image_version or ""
    if limits is not None:
        app[LIMITS] = limits
    for module in (health, v2, metrics, openai, embeddings, openapi):
        module.setup(app)
    return app
