"""The playground: the public inference APIs, mounted in-process under /api/playground.

The very modules that serve the API listener (``llmos.web.v2`` for embeddings,
``llmos.web.openai`` for chat, when present in this build) are set up again on a
sub-application of the admin app, so the playground exercises the real request path
without a second network hop - behind the admin app's login and CSRF checks, which
aiohttp applies to sub-applications too.
"""

from __future__ import annotations

import importlib
import logging

from aiohttp import web

from llmos.web.keys import SUPERVISOR

log = logging.getLogger(__name__)

PREFIX = "/api/playground"
MODULES = ("llmos.web.v2", "llmos.web.openai")


def _optional(name: str) -> object | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


MOUNTED = web.AppKey("playground_modules", tuple[str, ...])


def mounted(app: web.Application) -> tuple[str, ...]:
    """Which API modules the playground has ("v2", "openai"); ``app`` is the admin app."""
    return app.get(MOUNTED, ())


def setup(app: web.Application) -> None:
    sub = web.Application(
        client_max_size=int(app[SUPERVISOR].config["server.max_body_bytes"]))
    sub[SUPERVISOR] = app[SUPERVISOR]
    found = []
    for name in MODULES:
        module = _optional(name)
        if module is None:
            log.info("playground: %s is not in this build", name)
            continue
        module.setup(sub)  # type: ignore[attr-defined]
        found.append(name.rsplit(".", 1)[-1])
    app[MOUNTED] = tuple(found)
    app.add_subapp(PREFIX, sub)
