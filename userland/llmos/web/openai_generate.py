"""/v1/completions and /v1/chat/completions: n choices, log-probabilities, structured
output and tool calls over the engine (the wire format is ``llmos.llm.openai_protocol``).

Each of the ``n`` choices is its own sequence in the engine, with its own sampler, token
counts and grammar state (``llmos.llm.decoding``); with a ``seed``, choice ``i`` draws
with ``seed + i``, so the choices differ and the whole answer repeats. Their chunks are
merged into one stream (each carries its choice's ``index``); a client that goes away
cancels all of them.

A constrained request (``response_format`` json, or tools offered) compiles its grammar
once per request off the event loop, then gives every choice a fresh matcher.

With tools, an answer that is tool calls (``llmos.llm.tools``) comes back as
``message.tool_calls`` and ``finish_reason: "tool_calls"``; streamed, the call text is
held back and sent as one ``tool_calls`` delta per call when the choice ends, while a
plain text answer streams as it is generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from llmos.errors import LlmosError
from llmos.llm import openai_protocol as proto
from llmos.llm.constraints import Grammar, GrammarError, Grammars
from llmos.llm.generation import Chunk, Generation, GenerationRequest
from llmos.llm.logprobs import TokenLogprob, TokenTexts, chat_content, completion_logprobs
from llmos.llm.model import LanguageModel
from llmos.llm.openai_features import Features
from llmos.llm.schema_bounds import bounded
from llmos.llm.tools import CALL_OPEN, ToolSpec, parse_calls, prompt_text, tool_grammar
from llmos.web.openai import SSE_HEADERS, _client_gone, _error_body, _event, _gone, _model

Item = tuple[int, Chunk]


@dataclass
class _Tables:
    texts: TokenTexts
    grammars: Grammars


_TABLES: weakref.WeakKeyDictionary[LanguageModel, _Tables] = weakref.WeakKeyDictionary()


def _tables(lm: LanguageModel) -> _Tables:
    """The model's token texts and grammar compiler (built on first use; blocking)."""
    t = _TABLES.get(lm)
    if t is None:
        source = lm.tokenizer.to_json()
        eos = lm.info.eos_token_ids[0] if lm.info.eos_token_ids else 0
        t = _TABLES.setdefault(lm, _Tables(TokenTexts(source), Grammars(source, eos)))
    return t


def _grammar(tables: _Tables, f: Features) -> Grammar | None:
    """The request's grammar, or None when its output is free (blocking)."""
    try:
        if f.tools is not None and f.tools.active:
            grammar = tables.grammars.lark(tool_grammar(f.tools, f.json_schema))
            tables.grammars.constraint(grammar)  # fails here, not in the engine
            return grammar
        if f.json_schema is not None:
            return tables.grammars.json_schema(bounded(f.json_schema))
    except GrammarError as exc:
        param = "tools" if f.tools is not None and f.tools.active else "response_format"
        raise proto.FieldError(param, exc.message, exc.hint) from None
    return None


async def _submit(lm: LanguageModel, prompt_ids: tuple[int, ...], p: proto.CompletionParams,
                  f: Features) -> tuple[_Tables | None, list[Generation]]:
    tables = None
    grammar = None
    if f.top_logprobs is not None or f.constrained:
        tables = await asyncio.to_thread(_tables, lm)
        grammar = await asyncio.to_thread(_grammar, tables, f)
    gens: list[Generation] = []
    try:
        for i in range(f.n):
            seed = None if p.sampling.seed is None else p.sampling.seed + i
            constraint = None
            if grammar is not None:
                assert tables is not None
                constraint = await asyncio.to_thread(tables.grammars.constraint, grammar)
            gens.append(lm.generate(GenerationRequest(
                prompt_ids, p.max_tokens, dataclasses.replace(p.sampling, seed=seed), p.stop,
                p.ignore_eos, f.penalties, f.top_logprobs, constraint)))
    except BaseException:
        for g in gens:
            g.cancel()
        raise
    return tables, gens


async def _merged(request: web.Request,
                  gens: Sequence[Generation]) -> AsyncGenerator[Item, None]:
    """Every choice's chunks as they come, tagged with the choice's index; stops (and
    cancels them all) when the client has gone, one fails, or the consumer stops."""
    queue: asyncio.Queue[tuple[int, Chunk | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, gen: Generation) -> None:
        try:
            async for chunk in gen:
                queue.put_nowait((i, chunk))
        except Exception as exc:
            queue.put_nowait((i, exc))
        finally:
            queue.put_nowait((i, None))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
    try:
        left = len(gens)
        while left:
            i, item = await queue.get()
            if item is None:
                left -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            if _gone(request):
                return
            yield i, item
    finally:
        for g in gens:
            g.cancel()
        for t in tasks:
            t.cancel()


@dataclass
class _Choice:
    """One choice's output so far."""

    texts: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    last: Chunk | None = None

    @property
    def text(self) -> str:
        return "".join(self.texts)


async def _collect(request: web.Request, gens: Sequence[Generation]) -> list[_Choice] | None:
    """Every choice whole, or None when the client went away first."""
    choices = [_Choice() for _ in gens]
    async with contextlib.aclosing(_merged(request, gens)) as items:
        async for i, chunk in items:
            c = choices[i]
            c.texts.append(chunk.text)
            c.logprobs.extend(chunk.logprobs)
            c.last = chunk
    if any(c.last is None or c.last.finish_reason is None for c in choices):
        return None
    return choices


def _usage(choices: Sequence[_Choice]) -> dict[str, int]:
    lasts = [c.last for c in choices if c.last is not None]
    prompt = lasts[0].prompt_tokens if lasts else 0
    return proto.usage(prompt, sum(c.completion_tokens for c in lasts))


async def _stream(request: web.Request, gens: Sequence[Generation],
                  render: Callable[[int, Chunk], list[dict[str, Any]]],
                  tail: Callable[[dict[str, int]], list[dict[str, Any]]]) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    choices = [_Choice() for _ in gens]
    try:
        async with contextlib.aclosing(_merged(request, gens)) as items:
            async for i, chunk in items:
                choices[i].last = chunk
                for doc in render(i, chunk):
                    await response.write(_event(doc))
        if all(c.last is not None and c.last.finish_reason is not None for c in choices):
            for doc in tail(_usage(choices)):
                await response.write(_event(doc))
            await response.write(b"data: [DONE]\n\n")
    except LlmosError as exc:  # the engine failed mid-stream: say so in the stream
        await response.write(_event(_error_body(exc)))
    except ConnectionResetError:
        pass
    return response


# --- /v1/completions ----------------------------------------------------------------------
async def completions(request: web.Request) -> web.StreamResponse:
    req = proto.completion_request(proto.parse_body(await request.read()))
    p, f = req.params, req.features
    lm = _model(request, p.model)
    ids = lm.encode(req.prompt) if isinstance(req.prompt, str) else req.prompt
    if any(t >= lm.tokenizer.vocab_size for t in ids):
        raise proto.FieldError("prompt", f"token ids must be below {lm.tokenizer.vocab_size}")
    tables, gens = await _submit(lm, ids, p, f)
    rid, created = proto.new_id("cmpl"), lm.created
    head = {"id": rid, "object": "text_completion", "created": created, "model": lm.name}

    def logprobs(entries: Sequence[TokenLogprob], offset: int) -> dict[str, Any] | None:
        if f.top_logprobs is None or tables is None:
            return None
        return completion_logprobs(entries, tables.texts, offset)

    if not p.stream:
        done = await _collect(request, gens)
        if done is None:
            return _client_gone()
        return web.json_response({**head, "choices": [
            {"index": i, "text": c.text, "logprobs": logprobs(c.logprobs, 0),
             "finish_reason": c.last.finish_reason if c.last else None}
            for i, c in enumerate(done)], "usage": _usage(done)})
    offsets = [0] * f.n

    def render(i: int, c: Chunk) -> list[dict[str, Any]]:
        if not c.text and c.finish_reason is None and not c.logprobs:
            return []
        lp = logprobs(c.logprobs, offsets[i])
        offsets[i] += len(c.text)
        return [{**head, "choices": [{"index": i, "text": c.text, "logprobs": lp,
                                      "finish_reason": c.finish_reason}]}]

    def tail(usage: dict[str, int]) -> list[dict[str, Any]]:
        return [{**head, "choices": [], "usage": usage}] if p.include_usage else []

    return await _stream(request, gens, render, tail)


# --- /v1/chat/completions -----------------------------------------------------------------
def _message(text: str, finish: str | None, tools: ToolSpec | None
             ) -> tuple[dict[str, Any], str | None]:
    """The assistant message of a finished choice, and its finish reason."""
    if tools is None or not tools.active or (
            tools.choice == "auto" and not text.startswith(CALL_OPEN)):
        return {"role": "assistant", "content": text}, finish
    content, calls = parse_calls(text)
    if not calls:
        return {"role": "assistant", "content": text}, finish
    return ({"role": "assistant", "content": content,
             "tool_calls": [c.wire() for c in calls]},
            "tool_calls" if finish == "stop" else finish)


class _ChatChoiceStream:
    """Turns one choice's chunks into chat deltas; holds a tool-call answer back."""

    def __init__(self, index: int, tools: ToolSpec | None,
                 lp: Callable[[Sequence[TokenLogprob]], dict[str, Any] | None]) -> None:
        self.index = index
        self.tools = tools if tools is not None and tools.active else None
        self.holding: bool | None = None if self.tools and self.tools.choice == "auto" \
            else self.tools is not None
        self.started = False
        self.held: list[str] = []
        self.pending: list[TokenLogprob] = []
        self._lp = lp

    def _delta(self, delta: dict[str, Any], finish: str | None = None,
               logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"index": self.index, "delta": delta, "logprobs": logprobs,
                "finish_reason": finish}

    def render(self, c: Chunk) -> list[dict[str, Any]]:
        out = []
        if not self.started:
            out.append(self._delta({"role": "assistant", "content": ""}))
            self.started = True
        self.pending.extend(c.logprobs)
        if self.holding is None and c.text:
            self.holding = c.text.startswith(CALL_OPEN[0])  # the grammar's choice
        if self.holding:
            self.held.append(c.text)
        elif c.text:
            out.append(self._delta({"content": c.text}, None, self._take()))
        if c.finish_reason is None:
            return out
        finish: str | None = c.finish_reason
        if self.holding:
            text = "".join(self.held)
            content, calls = parse_calls(text)
            if calls:
                out.append(self._delta({"content": content, "tool_calls": [
                    call.wire(k) for k, call in enumerate(calls)]}, None, self._take()))
                finish = "tool_calls" if finish == "stop" else finish
            elif text:
                out.append(self._delta({"content": text}, None, self._take()))
        out.append(self._delta({}, finish, self._take()))
        return out

    def _take(self) -> dict[str, Any] | None:
        entries, self.pending = self.pending, []
        return self._lp(entries) if entries else None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    req = proto.chat_request(proto.parse_body(await request.read()))
    p, f = req.params, req.features
    lm = _model(request, p.model)
    if lm.chat is None:
        prompt = lm.chat_prompt(req.messages)  # refused: the model has no chat template
    else:
        prompt = prompt_text(lm.chat, req.messages, f.tools)
    tables, gens = await _submit(lm, lm.encode(prompt), p, f)
    rid, created = proto.new_id("chatcmpl"), lm.created
    head = {"id": rid, "created": created, "model": lm.name}

    def logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any] | None:
        if f.top_logprobs is None or tables is None:
            return None
        return {"content": chat_content(entries, tables.texts)}

    if not p.stream:
        done = await _collect(request, gens)
        if done is None:
            return _client_gone()
        out = []
        for i, c in enumerate(done):
            message, finish = _message(c.text, c.last.finish_reason if c.last else None,
                                       f.tools)
            out.append({"index": i, "message": message, "logprobs": logprobs(c.logprobs),
                        "finish_reason": finish})
        return web.json_response({**head, "object": "chat.completion", "choices": out,
                                  "usage": _usage(done)})
    streams = [_ChatChoiceStream(i, f.tools, logprobs) for i in range(f.n)]

    def render(i: int, c: Chunk) -> list[dict[str, Any]]:
        return [{**head, "object": "chat.completion.chunk", "choices": [d]}
                for d in streams[i].render(c)]

    def tail(usage: dict[str, int]) -> list[dict[str, Any]]:
        return [{**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                ] if p.include_usage else []

    return await _stream(request, gens, render, tail)
