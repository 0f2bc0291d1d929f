"""A request's state inside the generation engine, and what happens to its logits.

Only the engine's worker thread mutates a ``Sequence``; ``cancelled`` and ``interrupt`` are
read and set under the engine's lock. Chunks for the client collect in an ``Outbox`` and go
back to the event loops in one ``call_soon_threadsafe`` per loop (``deliver``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from llmos.errors import LlmosError
from llmos.llm.decoding import Pick, TokenChooser
from llmos.llm.detokenize import IncrementalDecoder
from llmos.llm.generation import Chunk, GenerationRequest
from llmos.llm.interrupt import Interrupt
from llmos.llm.stopping import FinishReason, StopChecker

log = logging.getLogger(__name__)


class Finished(Protocol):
    """The part of the engine's observer a sequence reports to."""

    def finished(self, seconds: float, prompt_tokens: int, generated_tokens: int,
                 reason: FinishReason) -> None: ...


@dataclass(eq=False)
class Sequence:
    request: GenerationRequest
    queue: asyncio.Queue[Chunk | BaseException]
    loop: asyncio.AbstractEventLoop
    chooser: TokenChooser
    stopper: StopChecker
    detok: IncrementalDecoder
    eos: frozenset[int]  # tokens whose logprob is not reported
    submitted: float = field(default_factory=time.perf_counter)
    length: int = 0  # tokens in the cache
    generated: list[int] = field(default_factory=list)  # the last is fed at the next step
    last_token_at: float = 0.0
    cancelled: bool = False
    interrupt: Interrupt | None = None  # set while its prompt is being prefilled
    ready: np.ndarray | None = None  # its prompt's last logits, when restored with them

    def cached_tokens(self) -> list[int]:
        """The token ids whose keys and values its cache slot holds."""
        return [*self.request.prompt_ids, *self.generated][:self.length]

    def advance(self, logits: np.ndarray, now: float, out: Outbox, observer: Finished) -> bool:
        """Choose, detokenise and check the stop rules; True when it has finished. Whatever
        fails here (its grammar, its parameters, its logits) fails this sequence alone (its
        stream gets the error), never the batch it was decoded with."""
        try:
            stop = self.stopper
            pick = self.chooser(logits, stop.criteria.max_tokens - stop.generated)
            return self._accept(pick, now, out, observer)
        except Exception as exc:
            log.warning("one sequence failed: %s: %s", type(exc).__name__, exc)
            err = exc if isinstance(exc, LlmosError) else LlmosError(
                f"generation failed: {type(exc).__name__}: {exc}", "see the server log")
            out.append((self, err))
            observer.finished(now - self.submitted, len(self.request.prompt_ids),
                              self.stopper.generated, "cancelled")
            return True

    def _accept(self, pick: Pick, now: float, out: Outbox, observer: Finished) -> bool:
        token = pick.token_id
        text, reason = self.stopper.feed(token, self.detok.push(token))
        self.generated.append(token)
        prompt = len(self.request.prompt_ids)
        logprobs = (pick.logprob,) if pick.logprob is not None and token not in self.eos \
            else ()
        out.append((self, Chunk(text, (token,), reason, prompt, self.stopper.generated,
                                logprobs)))
        if reason is not None:
            observer.finished(now - self.submitted, prompt, self.stopper.generated, reason)
        return reason is not None


Outbox = list[tuple[Sequence, Chunk | BaseException]]


def deliver(out: Outbox) -> None:
    """Hand ``out`` to the consumers' event loops (one callback per loop) and empty it."""
    by_loop: dict[asyncio.AbstractEventLoop, Outbox] = {}
    for seq, item in out:
        by_loop.setdefault(seq.loop, []).append((seq, item))
    out.clear()
    for loop, items in by_loop.items():
        # A closed loop (RuntimeError) means nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_put_all, items)


def _put_all(items: Outbox) -> None:
    for seq, item in items:
        seq.queue.put_nowait(item)
