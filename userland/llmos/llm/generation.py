"""One request's life as its caller sees it (pure asyncio, no engine internals).

A ``GenerationRequest`` goes in; a ``Generation`` comes back: an async iterator of
``Chunk``s, one per generated token, the last one carrying the finish reason. ``collect``
gathers them into a ``Completion``; ``cancel`` tells the engine to stop. ``expire_after``
gives it a deadline: a chunk that has not come by then is an ``InferenceTimeoutError``
(504), and the generation is cancelled, so a late request stops using the CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from llmos.errors import InferenceTimeoutError
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
        self._deadline: float | None = None  # loop time by which the next chunk is due
        self._first_only = False
        self._timeout_s = 0.0

    def expire_after(self, timeout_s: float, *, first_only: bool) -> None:
        """A deadline ``timeout_s`` from now: for the whole generation, or (``first_only``,
        streaming) for its first chunk, after which the client is being answered."""
        self._timeout_s = timeout_s
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        self._first_only = first_only

    async def _next(self) -> Chunk | BaseException:
        if self._deadline is None:
            return await self._queue.get()
        remaining = self._deadline - asyncio.get_running_loop().time()
        try:
            item = await asyncio.wait_for(self._queue.get(), max(remaining, 0.0))
        except TimeoutError:
            self.cancel()
            raise InferenceTimeoutError(
                f"no answer within the deadline of {self._timeout_s:g} s",
                "retry later, send a shorter prompt or fewer max_tokens, or raise the "
                "model's timeout_s") from None
        if self._first_only:
            self._deadline = None
        return item

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self

    async def __anext__(self) -> Chunk:
        if self._done:
            raise StopAsyncIteration
        item = await self._next()
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
