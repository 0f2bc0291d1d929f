"""The generation engine: continuous batching of many requests over one decoder.

One worker thread owns the decoder. At every step boundary it drops cancelled
sequences, admits waiting requests into free slots, then runs one decode step for all
running sequences together, so requests join and leave between tokens instead of waiting
for each other. A joining prompt starts from the longest prefix the decoder has cached
(``restore``; ``llmos.llm.prefixcache``) and is prefilled alone into its slot, in chunks of
at most ``prefill_chunk`` tokens per step while others are decoding (chunked prefill), so
the running streams wait one chunk between two tokens, not a whole prompt. A prompt, once
read, and a finished sequence's tokens are offered back to the prefix cache
(``remember``). Tokens go back
to the event loop in one ``call_soon_threadsafe`` per step, into an ``asyncio.Queue``
per request; a client that stops listening (or whose deadline passed) calls
``Generation.cancel``: a waiting request leaves the queue, a prompt being prefilled stops
between two graph nodes (``llmos.llm.interrupt``), a running sequence's slot is free at the
next step.

The waiting queue is bounded: a request beyond it gets ``QueueFullError``. A prompt that
leaves no room in the context for even one generated token gets ``BadRequestError``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence as Tokens
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from llmos.errors import BadRequestError, LlmosError, NotReadyError, QueueFullError
from llmos.hw import priority
from llmos.llm.decoding import TokenChooser
from llmos.llm.detokenize import IncrementalDecoder
from llmos.llm.generation import Generation, GenerationRequest
from llmos.llm.interrupt import Interrupt, Interrupted
from llmos.llm.sequence import Outbox, Sequence, deliver
from llmos.llm.stopping import FinishReason, StopChecker, StopCriteria
from llmos.serving.workers import supervise

log = logging.getLogger(__name__)


class StepRunner(Protocol):
    """What the engine needs from the decoder (``llmos.llm.decoder.Decoder``)."""

    @property
    def capacity(self) -> int: ...

    def prefill(self, slot: int, token_ids: Tokens[int], interrupt: Interrupt | None = None,
                start: int = 0) -> np.ndarray: ...

    def decode(self, tokens: Tokens[int], lengths: Tokens[int]) -> np.ndarray: ...

    def move(self, src: int, dst: int, length: int) -> None: ...

    def restore(self, slot: int, token_ids: Tokens[int]) -> tuple[int, np.ndarray | None]: ...

    def remember(self, slot: int, token_ids: Tokens[int],
                 logits: np.ndarray | None = None) -> None: ...

    @property
    def prefix_bytes(self) -> int | None: ...  # held by the prefix cache (None: none)


class EngineObserver(Protocol):
    """Receives timings and counts (``llmos.llm.metrics``); called from the worker thread."""

    def scheduled(self, running: int, waiting: int) -> None: ...

    def first_token(self, seconds: float) -> None: ...

    def next_token(self, seconds: float) -> None: ...

    def finished(self, seconds: float, prompt_tokens: int, generated_tokens: int,
                 reason: FinishReason) -> None: ...

    def prefix_reuse(self, prompt_tokens: int, reused_tokens: int, cached_bytes: int) -> None:
        ...


class NoObserver:
    """Observes nothing: the default, and a base for an observer of only some events."""

    def scheduled(self, running: int, waiting: int) -> None:
        pass

    def first_token(self, seconds: float) -> None:
        pass

    def next_token(self, seconds: float) -> None:
        pass

    def finished(self, seconds: float, prompt_tokens: int, generated_tokens: int,
                 reason: FinishReason) -> None:
        pass

    def prefix_reuse(self, prompt_tokens: int, reused_tokens: int, cached_bytes: int) -> None:
        pass


@dataclass(frozen=True)
class EngineLimits:
    max_running: int = 8  # sequences decoded together (cache slots)
    queue_size: int = 64  # requests waiting for a slot
    max_tokens: int = 512  # cap on tokens generated per request
    prefill_chunk: int = 128  # prompt tokens prefilled per step while others decode
    prefix_cache_bytes: int = 0  # the decoder's prefix cache of KV blocks (0: none)
    prefix_block_tokens: int = 16  # tokens per cached block


def chunk_size(todo: int, budget: int | None) -> int:
    """Prompt tokens to prefill next: at most ``budget`` (None: all ``todo``), but never one
    token alone while more remain or after others: onnxruntime computes a one-token step
    with other kernels (its int8 matrix-vector product) than a longer one, whose rows do
    not depend on how many there are; a prompt read in chunks or after a restored prefix
    then has the keys, values and logits of a prompt read whole, bit for bit. So a chunk
    may be a token or two over the budget."""
    n = todo if budget is None else min(max(budget, 2), todo)
    return n + 1 if todo - n == 1 else n


class Engine:
    def __init__(self, runner: StepRunner, decode_text: Callable[[Tokens[int]], str],
                 eos_token_ids: frozenset[int], limits: EngineLimits = EngineLimits(),
                 observer: EngineObserver | None = None, name: str = "llm") -> None:
        self.runner = runner
        self.limits = limits
        self.name = name
        self._decode_text = decode_text
        self._eos = eos_token_ids
        self._observer: EngineObserver = observer or NoObserver()
        self._cv = threading.Condition()
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._running: list[Sequence] = []  # index = cache slot
        self._filling: Sequence | None = None  # its prompt half read, in slot len(_running)
        self._cancelled = False  # some running sequence was cancelled
        self._closed = False
        self._thread = threading.Thread(  # restarted after a crash, its sequences failed
            target=supervise(f"engine-{name}", self._work, self._crashed),
            name=f"engine-{name}", daemon=True)
        self._thread.start()

    # --- event-loop side ---------------------------------------------------------
    @property
    def context_length(self) -> int:
        return self.runner.capacity

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        """Whether a request is waiting, being admitted or generating (closing now would
        fail it)."""
        with self._cv:
            return bool(self._waiting or self._running or self._filling)

    def budget(self, request: GenerationRequest) -> int:
        """Tokens this request may generate; refuses prompts that leave no room."""
        n = len(request.prompt_ids)
        ctx = self.context_length
        if n == 0:
            raise BadRequestError("the prompt is empty", "send some text to complete")
        if n >= ctx:
            raise BadRequestError(
                f"the prompt has {n} tokens but the context holds {ctx} "
                f"(prompt plus generated tokens)",
                f"shorten the prompt to at most {ctx - 1} tokens")
        wanted = self.limits.max_tokens if request.max_tokens is None else request.max_tokens
        if wanted < 1:
            raise BadRequestError(f"max_tokens must be >= 1, got {wanted}",
                                  "ask for at least one token")
        return min(wanted, self.limits.max_tokens, ctx - n)

    def submit(self, request: GenerationRequest) -> Generation:
        """Queue a request (call on the event loop); its chunks arrive on the returned handle."""
        budget = self.budget(request)
        seq = Sequence(
            request=request, queue=asyncio.Queue(), loop=asyncio.get_running_loop(),
            chooser=TokenChooser(request.sampling, request.penalties, request.top_logprobs,
                                 request.constraint),
            stopper=StopChecker(StopCriteria(
                budget, frozenset() if request.ignore_eos else self._eos, request.stop)),
            detok=IncrementalDecoder(self._decode_text), eos=self._eos)
        with self._cv:
            if self._closed:
                raise NotReadyError(f"model {self.name!r} is shutting down", "retry shortly")
            free = self.limits.max_running - len(self._running) - (self._filling is not None)
            if len(self._waiting) >= self.limits.queue_size + max(free, 0):
                raise QueueFullError(
                    f"model {self.name!r}: {len(self._waiting)} requests are already waiting",
                    "retry later, or raise the model's queue_size", retry_after_s=1.0)
            self._waiting.append(seq)
            self._cv.notify()
        return Generation(seq.queue, lambda: self.cancel(seq))

    def cancel(self, seq: Sequence) -> None:
        with self._cv:
            if seq in self._waiting:
                self._waiting.remove(seq)
                self._observer.scheduled(len(self._running), len(self._waiting))
                return
            seq.cancelled = True
            self._cancelled = True
            if seq.interrupt is not None:  # its prefill stops between two graph nodes
                seq.interrupt.request()
            self._cv.notify()

    def close(self) -> None:
        """Stop the worker; unfinished requests get NotReadyError."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    # --- worker side -------------------------------------------------------------
    def _work(self) -> None:
        priority.lower()  # below the event loop (llmos.hw.priority)
        while True:
            with self._cv:
                while not (self._closed or self._waiting or self._running or self._filling):
                    self._cv.wait()
                if self._closed:
                    break
                reap = self._cancelled
                self._cancelled = False
            out: Outbox = []
            try:
                if reap:
                    self._reap()
                self._fill(out)
                if self._running:
                    self._step(out)
            except Exception as exc:  # a failed run fails its batch, not the engine
                log.exception("engine %s: step failed", self.name)
                err = exc if isinstance(exc, LlmosError) else LlmosError(
                    f"generation failed: {type(exc).__name__}: {exc}", "see the server log")
                out.extend((seq, err) for seq in self._drop_all())
            deliver(out)
            self._observer.scheduled(len(self._running), len(self._waiting))
        self._shutdown()

    def _drop_all(self) -> list[Sequence]:
        """Empty the slots: the running sequences and the one being filled."""
        with self._cv:
            left = [*self._running, *([self._filling] if self._filling else [])]
            self._running.clear()
            self._filling = None
        return left

    def _crashed(self) -> None:
        """After a crash of the worker loop: the running sequences' caches are in doubt,
        so they fail; the waiting ones are admitted by the restarted loop."""
        err = LlmosError(f"model {self.name!r}: the generation worker crashed",
                         "retry; the server log has the trace")
        deliver([(seq, err) for seq in self._drop_all()])

    def _shutdown(self) -> None:
        err = NotReadyError(f"model {self.name!r} was unloaded", "retry once it is loaded again")
        left = self._drop_all()
        with self._cv:
            left += self._waiting
            self._waiting.clear()
        deliver([(seq, err) for seq in left])

    def _reap(self) -> None:
        now = time.perf_counter()
        for slot in range(len(self._running) - 1, -1, -1):
            seq = self._running[slot]
            if seq.cancelled:
                self._leave(slot)
                self._observer.finished(now - seq.submitted, len(seq.request.prompt_ids),
                                        seq.stopper.generated, "cancelled")

    def _leave(self, slot: int) -> None:
        """Free ``slot``: the last running sequence moves into it, and the one being
        filled follows it down (its slot is always the one after the running ones)."""
        last = len(self._running) - 1
        if slot != last:
            mover = self._running[last]
            self.runner.move(last, slot, mover.length)
            self._running[slot] = mover
        self._running.pop()
        if self._filling is not None:
            self.runner.move(last + 1, last, self._filling.length)

    # --- prefill -------------------------------------------------------------------
    def _fill(self, out: Outbox) -> None:
        """Prefill joining prompts: whole while nothing runs, else at most
        ``prefill_chunk`` tokens before the next decode step."""
        budget: int | None = None
        while budget is None or budget > 0:
            if budget is None and self._running:  # from now on others wait for the step
                budget = self.limits.prefill_chunk
            seq = self._filling or self._admit()
            if seq is None:
                return
            done = self._fill_chunk(seq, budget, out)
            deliver(out)  # a first token goes out now, not after the next step
            if budget is not None:
                budget -= done

    def _admit(self) -> Sequence | None:
        """Take the next waiting request into the free slot after the running ones, with
        the longest prefix of its prompt the decoder has cached."""
        with self._cv:
            if not self._waiting or len(self._running) >= self.limits.max_running:
                return None
            seq = self._filling = self._waiting.popleft()
            seq.interrupt = Interrupt()
        prompt = seq.request.prompt_ids
        seq.length, seq.ready = self.runner.restore(len(self._running), prompt)
        cached = self.runner.prefix_bytes
        if cached is not None:
            self._observer.prefix_reuse(len(prompt), seq.length, cached)
        return seq

    def _unfill(self, seq: Sequence) -> None:
        with self._cv:
            self._filling = None
            seq.interrupt = None

    def _fill_chunk(self, seq: Sequence, budget: int | None, out: Outbox) -> int:
        """Prefill the next chunk of ``seq``'s prompt (at most ``budget`` tokens, give or
        take one: ``chunk_size``); when it was the last (or the prompt was cached with its
        logits: ``ready``), ``seq`` has its first token and runs. Returns the tokens
        prefilled."""
        prompt, slot = seq.request.prompt_ids, len(self._running)
        if seq.ready is not None:
            self._join(seq, seq.ready, out)
            return 0
        n = chunk_size(len(prompt) - seq.length, budget)
        try:
            if seq.cancelled:
                raise Interrupted("cancelled between two chunks")
            logits = self.runner.prefill(slot, prompt[seq.length:seq.length + n],
                                         seq.interrupt, seq.length)
        except Interrupted:  # cancelled while its prompt was being read
            log.info("engine %s: a prefill of %d tokens was interrupted (request cancelled)",
                     self.name, len(prompt))
            self._unfill(seq)
            self._observer.finished(time.perf_counter() - seq.submitted, len(prompt), 0,
                                    "cancelled")
            return n
        except LlmosError as exc:
            self._unfill(seq)
            out.append((seq, exc))
            return n
        seq.length += n
        if seq.length == len(prompt):
            self.runner.remember(slot, prompt, logits)
            self._join(seq, logits, out)
        return n

    def _join(self, seq: Sequence, logits: np.ndarray, out: Outbox) -> None:
        """``seq``'s prompt is read: its first token, and it runs unless that ended it."""
        self._unfill(seq)
        seq.ready = None
        now = time.perf_counter()
        self._observer.first_token(now - seq.submitted)
        seq.last_token_at = now
        if not seq.advance(logits, now, out, self._observer):
            self._running.append(seq)

    def _step(self, out: Outbox) -> None:
        rows = self._running
        logits = self.runner.decode([s.generated[-1] for s in rows], [s.length for s in rows])
        now = time.perf_counter()
        done: list[int] = []
        for i, seq in enumerate(rows):
            seq.length += 1
            self._observer.next_token(now - seq.last_token_at)
            seq.last_token_at = now
            if seq.advance(logits[i], now, out, self._observer):
                done.append(i)
        for slot in reversed(done):
            self.runner.remember(slot, rows[slot].cached_tokens())
            self._leave(slot)
