"""One request's life as its caller sees it (pure asyncio, no engine internals).

A ``GenerationRequest`` goes in; a ``Generation`` comes back: an async iterator of
``Chunk``s, one per generated token, the last one carrying the finish reason. ``collect``
gathers them into a ``Completion``; ``cancel`` tells the engine to stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from llmos.llm.decoding import Penalties, TokenConstraint
from llmos.llm.logprobs import TokenLogprob
from llmos.llm.sampling import SamplingParams
from llmos.llm.stopping import FinishReason


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]
    max_tokens: int | None = None  # None: as many as the cap and the context allow
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # generate max_tokens whatever comes (benchmarks)
    penalties: Penalties = field(default_factory=Penalties)
    top_logprobs: int | None = None  # None: no log-probabilities in the chunks
    constraint: TokenConstraint | None = None  # this sequence's own grammar state


@dataclass(frozen=True)
class Chunk:
    """One generated token's worth of output (``text`` may be empty while held back)."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    logprobs: tuple[TokenLogprob, ...] = ()  # when asked for; none for the end token


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


class Generation:
    """The consumer's side of one request: an async iterator of chunks."""

    def __init__(self, queue: asyncio.Queue[Chunk | BaseException],
                 cancel: Callable[[], None]) -> None:
        self._queue = queue
        self._cancel = cancel
        self._done = False

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self

    async def __anext__(self) -> Chunk:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if item.finish_reason is not None:
            self._done = True
        return item

    def cancel(self) -> None:
        """Stop generating (idempotent); the slot is freed at the next step boundary."""
        if not self._done:
            self._done = True
            self._cancel()

    async def collect(self) -> Completion:
        """Wait for the whole generation (cancels it if the caller is cancelled)."""
        texts: list[str] = []
        ids: list[int] = []
        last: Chunk | None = None
        try:
            async for chunk in self:
                texts.append(chunk.text)
                ids.extend(chunk.token_ids)
                last = chunk
        finally:
            self.cancel()
        assert last is not None and last.finish_reason is not None
        return Completion("".join(texts), tuple(ids), last.finish_reason, last.prompt_tokens,
                          last.completion_tokens)
