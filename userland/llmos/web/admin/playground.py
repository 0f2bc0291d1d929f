"""The playground: the public inference APIs, mounted in-process under /api/playground.

The very modules that serve the API listener (``llmos.web.api.v2`` for embeddings,
``llmos.web.api.openai`` for chat) are set up again on a sub-application of the admin app,
on the same data plane, so the playground exercises the real request path without a second
network hop - behind the admin app's login and CSRF checks, which aiohttp applies to
sub-applications too.
"""

from __future__ import annotations

from aiohttp import web

from llmos.web.api import openai, v2
from llmos.web.keys import DATAPLANE

PREFIX = "/api/playground"
#: The API modules the playground mounts (the admin page offers what is listed here).
MOUNTED = ("v2", "openai")


def mounted(app: web.Application) -> tuple[str, ...]:
    """Which API modules the playground has ("v2", "openai"); ``app`` is the admin app."""
    return MOUNTED


def setup(app: web.Application, max_body_bytes: int) -> None:
    sub = web.Application(client_max_size=max_body_bytes)
    sub[DATAPLANE] = app[DATAPLANE]
    v2.setup(sub)
    openai.setup(sub)
    app.add_subapp(PREFIX, sub)
