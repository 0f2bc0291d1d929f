"""The OpenAI-compatible API for causal LMs: /v1/completions, /v1/chat/completions, and
/v1/models (every model, with its kind; /v1/embeddings is ``llmos.web.api.embeddings``).

``stream: true`` answers server-sent events, one per generated piece of text, ending with
``data: [DONE]``. A client that goes away (the connection closes) cancels its generation;
its slot in the engine is free at the next step.

Errors keep the status the app's error table gives them (``llmos.web.errors.status_of``)
but take OpenAI's body shape, ``{"error": {"message", "type", "param", "code"}}``, since
OpenAI clients read that; the hint rides along.

Handlers decode (``llmos.llm.openai_protocol``), call the data plane (``complete``,
``chat``: the request's ``n`` choices, ``llmos.llm.choices``) and encode
(``llmos.llm.openai_answers``); the causal-LM backend is the composition root's business.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from llmos.dataplane import ModelCard
from llmos.errors import BadRequestError, LlmosError, QueueFullError
from llmos.llm import openai_answers as answers
from llmos.llm import openai_embeddings as emb
from llmos.llm import openai_protocol as proto
from llmos.llm.choices import Answer, Choice
from llmos.llm.generation import Chunk
from llmos.llm.model import LanguageModel
from llmos.web.admission import decode
from llmos.web.errors import status_of
from llmos.web.keys import DATAPLANE

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}


def _error_body(exc: LlmosError) -> dict[str, Any]:
    param = exc.param if isinstance(exc, BadRequestError) else None
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


def _gone(request: web.Request) -> Callable[[], bool]:
    """Whether the client has gone (its connection closing), asked between chunks."""
    def gone() -> bool:
        transport = request.transport
        gone = transport is None or transport.is_closing()
        if gone:
            log.debug("client went away; cancelling its generation")
        return gone
    return gone


def _client_gone() -> web.Response:
    """Nobody reads this answer (nginx's 499, for the access log)."""
    return web.Response(status=499, text="client closed request")


def _event(doc: Any) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"


class _Renderer(Protocol):
    def render(self, i: int, c: Chunk) -> list[dict[str, Any]]: ...
    def tail(self, used: dict[str, int]) -> list[dict[str, Any]]: ...


async def _stream(request: web.Request, answer: Answer, renderer: _Renderer,
                  include_usage: bool) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    choices = [Choice() for _ in range(answer.n)]
    try:
        async with contextlib.aclosing(answer.items(_gone(request))) as items:
            async for i, chunk in items:
                choices[i].last = chunk
                for doc in renderer.render(i, chunk):
                    await response.write(_event(doc))
        if all(c.finish_reason is not None for c in choices):
            if include_usage:
                for doc in renderer.tail(answers.choices_usage(choices)):
                    await response.write(_event(doc))
            await response.write(b"data: [DONE]\n\n")
    except LlmosError as exc:  # the engine failed mid-stream: say so in the stream
        await response.write(_event(_error_body(exc)))
    except ConnectionResetError:
        log.debug("client went away while streaming")
    finally:
        answer.cancel()
    return response


async def _reply(request: web.Request, lm: LanguageModel, answer: Answer,
                 p: proto.CompletionParams, id_prefix: str,
                 whole: Callable[[dict[str, Any], list[Choice], Answer], dict[str, Any]],
                 stream: Callable[[dict[str, Any], Answer], _Renderer]) -> web.StreamResponse:
    """The answer as one JSON document (``whole``), or as server-sent events."""
    head = {"id": proto.new_id(id_prefix), "created": lm.created, "model": lm.name}
    if p.stream:
        return await _stream(request, answer, stream(head, answer), p.include_usage)
    done = await answer.collect(_gone(request))
    if done is None:
        return _client_gone()
    return web.json_response(whole(head, done, answer))


def _card(model: ModelCard) -> dict[str, Any]:
    extra = {k: v for k, v in (("max_model_len", model.max_model_len),
                               ("dimensions", model.dimensions)) if v is not None}
    return emb.model_card(model.name, model.kind, model.created, **extra)


async def list_models(request: web.Request) -> web.Response:
    """Every model serving now, each card saying its kind: language models (chat,
    completions), embedding models (/v1/embeddings) and tensor models (/v2 only)."""
    cards = [_card(m) for m in request.app[DATAPLANE].catalog()]
    return web.json_response({"object": "list", "data": cards})


async def completions(request: web.Request) -> web.StreamResponse:
    req = await decode(request, lambda body: proto.completion_request(proto.parse_body(body)))
    p = req.params
    plane = request.app[DATAPLANE]
    lm = plane.language_model(p.model)
    answer = await plane.complete(lm, req.prompt, p, req.features)
    return await _reply(request, lm, answer, p, "cmpl", answers.completion,
                        answers.CompletionStream)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    req = await decode(request, lambda body: proto.chat_request(proto.parse_body(body)))
    p = req.params
    plane = request.app[DATAPLANE]
    lm = plane.language_model(p.model)
    answer = await plane.chat(lm, req.messages, p, req.features)
    return await _reply(request, lm, answer, p, "chatcmpl", answers.chat, answers.ChatStream)


def setup(app: web.Application) -> None:
    """Routes under /v1."""
    app.router.add_get("/v1/models", openai_errors(list_models))
    app.router.add_post("/v1/completions", openai_errors(completions))
    app.router.add_post("/v1/chat/completions", openai_errors(chat_completions))
