"""The OpenAI-compatible API for causal LMs: /v1/models, /v1/completions, /v1/chat/completions.

``stream: true`` answers server-sent events, one per generated piece of text, ending with
``data: [DONE]``. A client that goes away (the connection closes) cancels its generation;
its slot in the engine is free at the next step.

Errors keep the status the app's error table gives them (``llmos.web.errors.status_of``)
but take OpenAI's body shape, ``{"error": {"message", "type", "param", "code"}}``, since
OpenAI clients read that; the hint rides along.

``setup`` also registers the ``causal-lm`` backend with the supervisor, so a build with
this module serves LLM packs.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from llmos.errors import LlmosError, QueueFullError
from llmos.llm import openai_protocol as proto
from llmos.llm.backend import KIND, causal_lm_backend
from llmos.llm.model import LanguageModel
from llmos.state import ModelState
from llmos.web.errors import status_of
from llmos.web.keys import SUPERVISOR

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}


def _error_body(exc: LlmosError) -> dict[str, Any]:
    param = exc.param if isinstance(exc, proto.FieldError) else None
    return {"error": {"message": exc.message, "type": type(exc).__name__, "param": param,
                      "code": status_of(exc)}, "hint": exc.hint}


def openai_errors(handler: Handler) -> Handler:
    """Answer domain errors in OpenAI's error shape (statuses from the app's table)."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except LlmosError as exc:
            headers = {}
            if isinstance(exc, QueueFullError):
                headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
            return web.json_response(_error_body(exc), status=status_of(exc), headers=headers)
    return wrapped


def _model(request: web.Request, name: str) -> LanguageModel:
    served = request.app[SUPERVISOR].served(name)
    if not isinstance(served, LanguageModel):
        raise proto.FieldError("model", f"{name!r} is not a language model",
                               "tensor models are served under /v2")
    return served


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _client_gone() -> web.Response:
    """Nobody reads this answer (nginx's 499, for the access log)."""
    return web.Response(status=499, text="client closed request")


def _event(doc: Any) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"


async def list_models(request: web.Request) -> web.Response:
    sup = request.app[SUPERVISOR]
    cards = []
    for st in sup.statuses():
        if st.kind == KIND and st.state is ModelState.READY:
            lm = sup.served(st.name)
            if isinstance(lm, LanguageModel):
                cards.append(proto.model_card(lm.name, lm.created, lm.context_length))
    return web.json_response({"object": "list", "data": cards})


def setup(app: web.Application) -> None:
    """Routes under /v1, and the causal-lm backend on the app's supervisor."""
    from llmos.web import openai_generate  # it builds on this module's helpers

    app[SUPERVISOR].register_backend(KIND, causal_lm_backend)
    app.router.add_get("/v1/models", openai_errors(list_models))
    app.router.add_post("/v1/completions", openai_errors(openai_generate.completions))
    app.router.add_post("/v1/chat/completions",
                        openai_errors(openai_generate.chat_completions))

