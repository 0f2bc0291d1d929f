"""Admission at the API edge: a global cap on the work in flight, and bodies read with a
deadline and decoded off the event loop when large.

- ``Admission``: inference requests (every POST) and their body bytes being served at
  once, over all models; beyond ``server.max_inflight_requests`` or
  ``server.max_inflight_bytes`` a request is answered 503 with ``Retry-After`` before its
  body is read, so the excess costs nothing but the refusal. GETs (health, metadata,
  metrics) are never counted nor refused: a load balancer always gets its answer.
- ``read_body``: the body, within ``server.body_timeout_s`` (408 after: a client trickling
  its body no longer holds a slot for ever).
- ``decode``: ``parse(body)`` in a worker thread when the body is larger than
  ``server.offload_bytes`` (JSON of megabytes takes the loop for a second), inline otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llmos.config import Config
from llmos.errors import QueueFullError, RequestTimeoutError

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    max_requests: int
    max_bytes: int
    max_body_bytes: int
    body_timeout_s: float
    offload_bytes: int

    @classmethod
    def from_config(cls, cfg: Config) -> Limits:
        return cls(int(cfg["server.max_inflight_requests"]),
                   int(cfg["server.max_inflight_bytes"]), int(cfg["server.max_body_bytes"]),
                   float(cfg["server.body_timeout_s"]), int(cfg["server.offload_bytes"]))


LIMITS = web.AppKey("admission_limits", Limits)


class Admission:
    """Counts what is in flight; ``admit`` or raise ``QueueFullError`` (503)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.requests = 0
        self.bytes = 0
        self.refused = 0

    def admit(self, size: int) -> None:
        lim = self.limits
        if self.requests >= lim.max_requests or (self.bytes and self.bytes + size > lim.max_bytes):
            self.refused += 1
            raise QueueFullError(
                f"the server is at capacity ({self.requests} requests, {self.bytes} body "
                "bytes in flight)", "retry after the delay given in Retry-After",
                retry_after_s=1.0)
        self.requests += 1
        self.bytes += size

    def release(self, size: int) -> None:
        self.requests -= 1
        self.bytes -= size

    def middleware(self) -> Middleware:
        @web.middleware
        async def admission(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method != "POST":
                return await handler(request)
            # A chunked body of unknown length counts as one body limit's worth.
            size = request.content_length
            if size is None:
                size = self.limits.max_body_bytes
            self.admit(size)
            try:
                return await handler(request)
            finally:
                self.release(size)

        return admission


async def read_body(request: web.Request) -> bytes:
    """The whole body, or ``RequestTimeoutError`` (408) when it takes longer than allowed."""
    limits = request.app.get(LIMITS)
    if limits is None:
        return await request.read()
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            return await request.read()
    except TimeoutError:
        raise RequestTimeoutError(
            f"the request body did not arrive within {limits.body_timeout_s:g} s",
            "send the body at once, or raise server.body_timeout_s") from None


async def offload(request: web.Request, size: int, work: Callable[[], T]) -> T:
    """``work()`` in a worker thread when ``size`` is above ``server.offload_bytes``."""
    limits = request.app.get(LIMITS)
    if limits is not None and size > limits.offload_bytes:
        return await asyncio.to_thread(work)
    return work()


async def decode(request: web.Request, parse: Callable[[bytes], T]) -> T:
    """The body read (with its deadline) and parsed, off the loop when large."""
    body = await read_body(request)
    return await offload(request, len(body), lambda: parse(body))
