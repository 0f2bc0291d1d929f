"""One request's ``n`` choices over the engine (no transport).

Each choice is its own sequence in the engine, with its own sampler, token counts and
grammar state (``llmos.llm.decoding``); with a ``seed``, choice ``i`` draws with
``seed + i``, so the choices differ and the whole answer repeats. ``Answer.items`` merges
their chunks into one stream, each tagged with its choice's index; a consumer that stops
(its client gone) cancels all of them.

A constrained request (``response_format`` json, or tools offered) compiles its grammar
once, off the event loop, then gives every choice a fresh matcher. A grammar that does not
compile is the request's 400 before anything runs; a failure while choosing a token ends
only that request's sequence (``Engine._choose``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmos.llm.constraints import Grammar, GrammarError, Grammars
from llmos.llm.generation import Chunk, Generation, GenerationRequest
from llmos.llm.logprobs import TokenLogprob, TokenTexts, chat_content, completion_logprobs
from llmos.llm.model import LanguageModel
from llmos.llm.openai_features import Features
from llmos.llm.openai_fields import FieldError
from llmos.llm.openai_protocol import CompletionParams
from llmos.llm.schema_bounds import bounded
from llmos.llm.tools import tool_grammar

Item = tuple[int, Chunk]


@dataclass
class Tables:
    """A model's token texts (log-probabilities) and grammar compiler."""

    texts: TokenTexts
    grammars: Grammars


_TABLES: weakref.WeakKeyDictionary[LanguageModel, Tables] = weakref.WeakKeyDictionary()


def tables(lm: LanguageModel) -> Tables:
    """The model's tables, built on first use (blocking: call it off the event loop)."""
    t = _TABLES.get(lm)
    if t is None:
        source = lm.tokenizer.to_json()
        eos = lm.info.eos_token_ids[0] if lm.info.eos_token_ids else 0
        t = _TABLES.setdefault(lm, Tables(TokenTexts(source), Grammars(source, eos)))
    return t


def grammar(t: Tables, f: Features) -> Grammar | None:
    """The request's grammar, or None when its output is free (blocking)."""
    try:
        if f.tools is not None and f.tools.active:
            g = t.grammars.lark(tool_grammar(f.tools, f.json_schema))
            t.grammars.constraint(g)  # fails here, not in the engine
            return g
        if f.json_schema is not None:
            return t.grammars.json_schema(bounded(f.json_schema))
    except GrammarError as exc:
        param = "tools" if f.tools is not None and f.tools.active else "response_format"
        raise FieldError(param, exc.message, exc.hint) from None
    return None


@dataclass
class Choice:
    """One choice's output so far."""

    texts: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    last: Chunk | None = None

    @property
    def text(self) -> str:
        return "".join(self.texts)

    @property
    def finish_reason(self) -> str | None:
        return None if self.last is None else self.last.finish_reason


def usage(choices: Sequence[Choice]) -> tuple[int, int]:
    """Prompt tokens (counted once) and completion tokens (of every choice)."""
    lasts = [c.last for c in choices if c.last is not None]
    return (lasts[0].prompt_tokens if lasts else 0,
            sum(c.completion_tokens for c in lasts))


class Answer:
    """A request's running choices, and what renders their log-probabilities."""

    def __init__(self, gens: Sequence[Generation], features: Features,
                 t: Tables | None) -> None:
        self.gens = tuple(gens)
        self.features = features
        self._tables = t

    @property
    def n(self) -> int:
        return len(self.gens)

    def cancel(self) -> None:
        for g in self.gens:
            g.cancel()

    def completion_logprobs(self, entries: Sequence[TokenLogprob],
                            offset: int) -> dict[str, Any] | None:
        """/v1/completions' logprobs object, or None when not asked for."""
        if self.features.top_logprobs is None or self._tables is None:
            return None
        return completion_logprobs(entries, self._tables.texts, offset)

    def chat_logprobs(self, entries: Sequence[TokenLogprob]) -> dict[str, Any] | None:
        """/v1/chat/completions' logprobs object, or None when not asked for."""
        if self.features.top_logprobs is None or self._tables is None:
            return None
        return {"content": chat_content(entries, self._tables.texts)}

    async def items(self, gone: Callable[[], bool]) -> AsyncGenerator[Item, None]:
        """Every choice's chunks as they come, tagged with the choice's index; stops (and
        cancels them all) when ``gone()``, when one fails, or when the consumer stops."""
        queue: asyncio.Queue[tuple[int, Chunk | BaseException | None]] = asyncio.Queue()

        async def pump(i: int, gen: Generation) -> None:
            try:
                async for chunk in gen:
                    queue.put_nowait((i, chunk))
            except Exception as exc:
                queue.put_nowait((i, exc))
            finally:
                queue.put_nowait((i, None))

        tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(self.gens)]
        try:
            left = len(tasks)
            while left:
                i, item = await queue.get()
                if item is None:
                    left -= 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                if gone():
                    return
                yield i, item
        finally:
            self.cancel()
            for t in tasks:
                t.cancel()

    async def collect(self, gone: Callable[[], bool]) -> list[Choice] | None:
        """Every choice whole, or None when ``gone()`` before they ended."""
        choices = [Choice() for _ in self.gens]
        async with contextlib.aclosing(self.items(gone)) as items:
            async for i, chunk in items:
                c = choices[i]
                c.texts.append(chunk.text)
                c.logprobs.extend(chunk.logprobs)
                c.last = chunk
        if any(c.finish_reason is None for c in choices):
            return None
        return choices


async def submit(lm: LanguageModel, prompt_ids: tuple[int, ...], p: CompletionParams,
                 f: Features) -> Answer:
    """Start the request's ``f.n`` choices (a bad grammar raises before any starts)."""
    t = None
    g = None
    if f.top_logprobs is not None or f.constrained:
        t = await asyncio.to_thread(tables, lm)
        g = await asyncio.to_thread(grammar, t, f)
    gens: list[Generation] = []
    try:
        for i in range(f.n):
            seed = None if p.sampling.seed is None else p.sampling.seed + i
            constraint = None
            if g is not None and t is not None:
                constraint = await asyncio.to_thread(t.grammars.constraint, g)
            gen = lm.generate(GenerationRequest(
                prompt_ids, p.max_tokens, dataclasses.replace(p.sampling, seed=seed),
                p.stop, p.ignore_eos, f.penalties, f.top_logprobs, constraint))
            if lm.timeout_s is not None:  # the whole answer, or a stream's first token
                gen.expire_after(lm.timeout_s, first_only=p.stream)
            gens.append(gen)
    except BaseException:
        for gen in gens:
            gen.cancel()
        raise
    return Answer(gens, f, t)
