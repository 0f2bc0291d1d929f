"""Errors, mapped to HTTP once: every handler raises, this middleware answers.

The body is always ``{"error": message, "hint": hint, "type": name}`` (the v2 protocol's
``error`` field plus what to do about it). Unexpected exceptions are logged with their
trace and answered 500 without it. A 5xx the server means (503 when a queue is full, 504
past a deadline) is logged at most once per ``LOG_EVERY_S`` per kind, with how many were
held back: under overload a line per refused request would cost the event loop the time
that /health and the requests it does accept need.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from llmos.errors import (
    BadRequestError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    InferenceTimeoutError,
    KeyReleaseError,
    LlmosError,
    ModelLoadError,
    NotFoundError,
    NotReadyError,
    PackFormatError,
    PayloadTooLargeError,
    QueueFullError,
    RequestTimeoutError,
    WrongKeyError,
)
from llmos.serving.codec import dumps

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0


class Throttle:
    """Lets a line of each kind through at most once per ``every_s`` seconds; the next one
    that passes says how many were held back meanwhile."""

    def __init__(self, every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def passes(self, kind: str) -> int | None:
        """None: hold this one back; else how many of ``kind`` were held back before it."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.every_s:
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._held.pop(kind, 0)

#: HTTP status of each domain error (the most derived class in an error's MRO wins).
STATUS: Mapping[type[LlmosError], int] = {
    BadRequestError: 400,
    ConfigError: 400,
    ForbiddenError: 403,
    NotFoundError: 404,
    RequestTimeoutError: 408,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    # The pack (not the request) is at fault: the server cannot process this model.
    PackFormatError: 422,
    WrongKeyError: 422,
    ModelLoadError: 422,
    NotReadyError: 503,
    QueueFullError: 503,
    KeyReleaseError: 503,
    InferenceTimeoutError: 504,
    LlmosError: 500,
}

_HTTP_HINTS = {
    404: "see GET /v2 and /v2/repository/index for what this server offers",
    405: "check the HTTP method (inference is POST .../infer)",
    413: "send a smaller body, or raise server.max_body_bytes",
}


def status_of(exc: LlmosError, table: Mapping[type[LlmosError], int] = STATUS) -> int:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return 500


def json_error(status: int, message: str, hint: str, kind: str,
               headers: Mapping[str, str] | None = None,
               param: str | None = None) -> web.Response:
    doc = {"error": message, "hint": hint, "type": kind}
    if param is not None:  # the field at fault, when one is
        doc["param"] = param
    body = dumps(doc)
    return web.Response(status=status, body=body, content_type="application/json",
                        headers=headers)


def error_response(exc: LlmosError,
                   table: Mapping[type[LlmosError], int] = STATUS) -> web.Response:
    headers = None
    if isinstance(exc, QueueFullError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    param = exc.param if isinstance(exc, BadRequestError) else None
    return json_error(status_of(exc, table), exc.message, exc.hint, type(exc).__name__, headers,
                      param)


def error_middleware(extra: Mapping[type[LlmosError], int] | None = None) -> Middleware:
    """The middleware; ``extra`` adds or overrides statuses (an admin app's auth errors)."""
    table = {**STATUS, **(extra or {})}
    throttle = Throttle()

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except LlmosError as exc:
            status = status_of(exc, table)
            if status >= 500 and (held := throttle.passes(type(exc).__name__)) is not None:
                log.warning("%s %s: %s%s", request.method, request.path, exc,
                            f" ({held} more {status}s like it since the last line)"
                            if held else "")
            return error_response(exc, table)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kind = "PayloadTooLargeError" if exc.status == 413 else exc.reason.replace(" ", "")
            message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") \
                else f"{exc.reason}: {request.method} {request.path}"
            return json_error(exc.status, message, _HTTP_HINTS.get(exc.status, ""), kind)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return json_error(500, "internal server error", "see the server log",
                              "InternalError")

    return errors
