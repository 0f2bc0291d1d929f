"""The OpenAI-compatible API for causal LMs: /v1/completions, /v1/chat/completions, and
/v1/models (every model, with its kind; /v1/embeddings is ``llmos.web.api.embeddings``).

``stream: true`` answers server-sent events, one per generated piece of text, ending with
``data: [DONE]``. A client that goes away (the connection closes) cancels its generation;
its slot in the engine is free at the next step.

Errors keep the status the app's error table gives them (``llmos.web.errors.status_of``)
but take OpenAI's body shape, ``{"error": {"message", "type", "param", "code"}}``, since
OpenAI clients read that; the hint rides along.

Handlers decode (``llmos.llm.openai_protocol``), call the data plane (``complete``,
``chat``) and encode; the causal-LM backend is the composition root's business.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from aiohttp import web

from llmos.dataplane import ModelCard
from llmos.errors import BadRequestError, LlmosError, QueueFullError
from llmos.llm import openai_embeddings as emb
from llmos.llm import openai_protocol as proto
from llmos.llm.generation import Chunk, Completion, Generation
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


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _chunks(request: web.Request, gen: Generation) -> AsyncGenerator[Chunk, None]:
    """The generation's chunks; cancels it when the client has gone or stops reading."""
    try:
        async for chunk in gen:
            if _gone(request):
                log.debug("client went away; cancelling its generation")
                return
            yield chunk
    finally:
        gen.cancel()


async def _collect(request: web.Request, gen: Generation) -> Completion | None:
    """The whole generation, or None when the client went away before it ended."""
    texts: list[str] = []
    ids: list[int] = []
    last: Chunk | None = None
    async with contextlib.aclosing(_chunks(request, gen)) as chunks:
        async for chunk in chunks:
            texts.append(chunk.text)
            ids.extend(chunk.token_ids)
            last = chunk
    if last is None or last.finish_reason is None:
        return None
    return Completion("".join(texts), tuple(ids), last.finish_reason, last.prompt_tokens,
                      last.completion_tokens)


def _client_gone() -> web.Response:
    """Nobody reads this answer (nginx's 499, for the access log)."""
    return web.Response(status=499, text="client closed request")


def _event(doc: Any) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"


async def _stream(request: web.Request, gen: Generation,
                  render: Callable[[Chunk], list[dict[str, Any]]],
                  tail: Callable[[Chunk], list[dict[str, Any]]]) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    last: Chunk | None = None
    try:
        async with contextlib.aclosing(_chunks(request, gen)) as chunks:
            async for chunk in chunks:
                last = chunk
                for doc in render(chunk):
                    await response.write(_event(doc))
        if last is not None and last.finish_reason is not None:
            for doc in tail(last):
                await response.write(_event(doc))
            await response.write(b"data: [DONE]\n\n")
    except LlmosError as exc:  # the engine failed mid-stream: say so in the stream
        await response.write(_event(_error_body(exc)))
    except ConnectionResetError:
        log.debug("client went away while streaming")
    return response


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
    gen = await plane.complete(lm, req.prompt, p)
    rid, created = proto.new_id("cmpl"), lm.created
    if not p.stream:
        done = await _collect(request, gen)
        if done is None:
            return _client_gone()
        return web.json_response(proto.completion_response(rid, created, lm.name, done))

    def render(c: Chunk) -> list[dict[str, Any]]:
        if not c.text and c.finish_reason is None:
            return []
        return [proto.completion_chunk(rid, created, lm.name, c)]

    def tail(c: Chunk) -> list[dict[str, Any]]:
        return [proto.usage_chunk(rid, created, lm.name, "text_completion", c.prompt_tokens,
                                  c.completion_tokens)] if p.include_usage else []

    return await _stream(request, gen, render, tail)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    req = await decode(request, lambda body: proto.chat_request(proto.parse_body(body)))
    p = req.params
    plane = request.app[DATAPLANE]
    lm = plane.language_model(p.model)
    gen = await plane.chat(lm, req.messages, p)
    rid, created = proto.new_id("chatcmpl"), lm.created
    if not p.stream:
        done = await _collect(request, gen)
        if done is None:
            return _client_gone()
        return web.json_response(proto.chat_response(rid, created, lm.name, done))
    first = True

    def render(c: Chunk) -> list[dict[str, Any]]:
        nonlocal first
        docs = []
        if first:
            docs.append(proto.chat_chunk(rid, created, lm.name,
                                         {"role": "assistant", "content": ""}, None))
            first = False
        if c.text:
            docs.append(proto.chat_chunk(rid, created, lm.name, {"content": c.text}, None))
        if c.finish_reason is not None:
            docs.append(proto.chat_chunk(rid, created, lm.name, {}, c.finish_reason))
        return docs

    def tail(c: Chunk) -> list[dict[str, Any]]:
        return [proto.usage_chunk(rid, created, lm.name, "chat.completion.chunk",
                                  c.prompt_tokens, c.completion_tokens)] if p.include_usage else []

    return await _stream(request, gen, render, tail)


def setup(app: web.Application) -> None:
    """Routes under /v1."""
    app.router.add_get("/v1/models", openai_errors(list_models))
    app.router.add_post("/v1/completions", openai_errors(completions))
    app.router.add_post("/v1/chat/completions", openai_errors(chat_completions))
