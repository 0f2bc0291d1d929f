"""The inference API's aiohttp application: routes mounted on the data plane it is given.

It starts nothing: the composition root (``llmos.app``) hangs the server's start and stop
on this app's cleanup context.
"""

from __future__ import annotations

from aiohttp import web

from llmos.dataplane import DataPlane
from llmos.web.api import health, metrics, openai, v2
from llmos.web.errors import error_middleware
from llmos.web.keys import DATAPLANE


def build_api_app(plane: DataPlane, max_body_bytes: int) -> web.Application:
    """/health, /v2 (OIP), /metrics and /v1 (OpenAI) on ``plane``."""
    app = web.Application(client_max_size=max_body_bytes, middlewares=[error_middleware()])
    app[DATAPLANE] = plane
    for module in (health, v2, metrics, openai):
        module.setup(app)
    return app
