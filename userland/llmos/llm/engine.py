"""The generation engine: continuous batching of many requests over one decoder.

One worker thread owns the decoder. At every step boundary it drops cancelled
sequences, admits waiting requests into free slots (each prompt is prefilled alone into
its slot's cache), then runs one decode step for all running sequences together, so
requests join and leave between tokens instead of waiting for each other. Tokens go back
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
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from llmos.errors import BadRequestError, LlmosError, NotReadyError, QueueFullError
from llmos.llm.decoding import Pick, TokenChooser
from llmos.llm.detokenize import IncrementalDecoder
from llmos.llm.generation import Chunk, Generation, GenerationRequest
from llmos.llm.interrupt import Interrupt, Interrupted
from llmos.llm.stopping import FinishReason, StopChecker, StopCriteria
from llmos.serving.workers import supervise

log = logging.getLogger(__name__)


class StepRunner(Protocol):
    """What the engine needs from the decoder (``llmos.llm.decoder.Decoder``)."""

    @property
    def capacity(self) -> int: ...

    def prefill(self, slot: int, token_ids: Sequence[int],
                interrupt: Interrupt | None = None) -> np.ndarray: ...

    def decode(self, tokens: Sequence[int], lengths: Sequence[int]) -> np.ndarray: ...

    def move(self, src: int, dst: int, length: int) -> None: ...


class EngineObserver(Protocol):
    """Receives timings and counts (``llmos.llm.metrics``); called from the worker thread."""

    def scheduled(self, running: int, waiting: int) -> None: ...

    def first_token(self, seconds: float) -> None: ...

    def next_token(self, seconds: float) -> None: ...

    def finished(self, seconds: float, prompt_tokens: int, generated_tokens: int,
                 reason: FinishReason) -> None: ...


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


@dataclass(frozen=True)
class EngineLimits:
    max_running: int = 8  # sequences decoded together (cache slots)
    queue_size: int = 64  # requests waiting for a slot
    max_tokens: int = 512  # cap on tokens generated per request


@dataclass(eq=False)
class _Sequence:
    """A request's state inside the engine (only the worker thread mutates it)."""

    request: GenerationRequest
    queue: asyncio.Queue[Chunk | BaseException]
    loop: asyncio.AbstractEventLoop
    chooser: TokenChooser
    stopper: StopChecker
    detok: IncrementalDecoder
    submitted: float = field(default_factory=time.perf_counter)
    length: int = 0  # tokens in the cache
    pending: int = -1  # sampled token to feed at the next step
    last_token_at: float = 0.0
    cancelled: bool = False
    interrupt: Interrupt | None = None  # set while its prompt is being prefilled


class Engine:
    def __init__(self, runner: StepRunner, decode_text: Callable[[Sequence[int]], str],
                 eos_token_ids: frozenset[int], limits: EngineLimits = EngineLimits(),
                 observer: EngineObserver | None = None, name: str = "llm") -> None:
        self.runner = runner
        self.limits = limits
        self.name = name
        self._decode_text = decode_text
        self._eos = eos_token_ids
        self._observer: EngineObserver = observer or NoObserver()
        self._cv = threading.Condition()
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._running: list[_Sequence] = []  # index = cache slot
        self._admitting = 0  # taken from the queue, being prefilled
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
            return bool(self._waiting or self._running or self._admitting)

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
        seq = _Sequence(
            request=request, queue=asyncio.Queue(), loop=asyncio.get_running_loop(),
            chooser=TokenChooser(request.sampling, request.penalties, request.top_logprobs,
                                 request.constraint),
            stopper=StopChecker(StopCriteria(
                budget, frozenset() if request.ignore_eos else self._eos, request.stop)),
            detok=IncrementalDecoder(self._decode_text))
        with self._cv:
            if self._closed:
                raise NotReadyError(f"model {self.name!r} is shutting down", "retry shortly")
            free = self.limits.max_running - len(self._running) - self._admitting
            if len(self._waiting) >= self.limits.queue_size + max(free, 0):
                raise QueueFullError(
                    f"model {self.name!r}: {len(self._waiting)} requests are already waiting",
                    "retry later, or raise the model's queue_size", retry_after_s=1.0)
            self._waiting.append(seq)
            self._cv.notify()
        return Generation(seq.queue, lambda: self.cancel(seq))

    def cancel(self, seq: _Sequence) -> None:
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
        while True:
            with self._cv:
                while not (self._closed or self._waiting or self._running):
                    self._cv.wait()
                if self._closed:
                    break
                free = self.limits.max_running - len(self._running)
                admitted = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
                self._admitting = len(admitted)
                reap = self._cancelled
                self._cancelled = False
            out: list[tuple[_Sequence, Chunk | BaseException]] = []
            try:
                if reap:
                    self._reap()
                for seq in admitted:
                    self._prefill(seq, out)
                    self._deliver(out)  # a first token goes out now, not after the next step
                    with self._cv:
                        self._admitting -= 1
                if self._running:
                    self._step(out)
            except Exception as exc:  # a failed run fails its batch, not the engine
                log.exception("engine %s: step failed", self.name)
                err = exc if isinstance(exc, LlmosError) else LlmosError(
                    f"generation failed: {type(exc).__name__}: {exc}", "see the server log")
                for seq in [*self._running, *admitted]:
                    out.append((seq, err))
                self._running.clear()
                with self._cv:
                    self._admitting = 0
            self._deliver(out)
            self._observer.scheduled(len(self._running), len(self._waiting))
        self._shutdown()

    def _crashed(self) -> None:
        """After a crash of the worker loop: the running sequences' caches are in doubt,
        so they fail; the waiting ones are admitted by the restarted loop."""
        err = LlmosError(f"model {self.name!r}: the generation worker crashed",
                         "retry; the server log has the trace")
        with self._cv:
            left = list(self._running)
            self._running.clear()
            self._admitting = 0
        self._deliver([(seq, err) for seq in left])

    def _shutdown(self) -> None:
        err = NotReadyError(f"model {self.name!r} was unloaded", "retry once it is loaded again")
        with self._cv:
            left = [*self._running, *self._waiting]
            self._running.clear()
            self._waiting.clear()
        self._deliver([(seq, err) for seq in left])

    def _deliver(self, out: list[tuple[_Sequence, Chunk | BaseException]]) -> None:
        """Hand ``out`` to the consumers' event loops (one callback per loop) and empty it."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Sequence, Chunk | BaseException]]] = {}
        for seq, item in out:
            by_loop.setdefault(seq.loop, []).append((seq, item))
        out.clear()
        for loop, items in by_loop.items():
            # A closed loop (RuntimeError) means nobody is listening any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_put_all, items)

    def _reap(self) -> None:
        now = time.perf_counter()
        for slot in range(len(self._running) - 1, -1, -1):
            seq = self._running[slot]
            if seq.cancelled:
                self._leave(slot)
                self._observer.finished(now - seq.submitted, len(seq.request.prompt_ids),
                                        seq.stopper.generated, "cancelled")

    def _leave(self, slot: int) -> None:
        last = len(self._running) - 1
        if slot != last:
            mover = self._running[last]
            self.runner.move(last, slot, mover.length)
            self._running[slot] = mover
        self._running.pop()

    def _prefill(self, seq: _Sequence, out: list[tuple[_Sequence, Chunk | BaseException]]) -> None:
        with self._cv:
            if seq.cancelled:
                return
            seq.interrupt = Interrupt()
        slot = len(self._running)
        try:
            logits = self.runner.prefill(slot, seq.request.prompt_ids, seq.interrupt)
        except Interrupted:  # cancelled while its prompt was being read
            log.info("engine %s: a prefill of %d tokens was interrupted (request cancelled)",
                     self.name, len(seq.request.prompt_ids))
            self._observer.finished(time.perf_counter() - seq.submitted,
                                    len(seq.request.prompt_ids), 0, "cancelled")
            return
        except LlmosError as exc:
            out.append((seq, exc))
            return
        finally:
            with self._cv:
                seq.interrupt = None
        seq.length = len(seq.request.prompt_ids)
        now = time.perf_counter()
        self._observer.first_token(now - seq.submitted)
        seq.last_token_at = now
        if not self._advance(seq, logits, now, out):
            self._running.append(seq)

    def _step(self, out: list[tuple[_Sequence, Chunk | BaseException]]) -> None:
        rows = self._running
        logits = self.runner.decode([s.pending for s in rows], [s.length for s in rows])
        now = time.perf_counter()
        done: list[int] = []
        for i, seq in enumerate(rows):
            seq.length += 1
            self._observer.next_token(now - seq.last_token_at)
            seq.last_token_at = now
            if self._advance(seq, logits[i], now, out):
                done.append(i)
        for slot in reversed(done):
            self._leave(slot)

    def _advance(self, seq: _Sequence, logits: np.ndarray, now: float,
                 out: list[tuple[_Sequence, Chunk | BaseException]]) -> bool:
        """Choose, detokenise and check the stop rules of one sequence; True when it has
        finished. Whatever fails here (its grammar, its parameters, its logits) fails this
        sequence alone (its stream gets the error), never the batch it was decoded with."""
        try:
            stop = seq.stopper
            pick = seq.chooser(logits, stop.criteria.max_tokens - stop.generated)
            return self._accept(seq, pick, now, out)
        except Exception as exc:
            log.warning("engine %s: one sequence failed: %s: %s", self.name,
                        type(exc).__name__, exc)
            err = exc if isinstance(exc, LlmosError) else LlmosError(
                f"generation failed: {type(exc).__name__}: {exc}", "see the server log")
            out.append((seq, err))
            self._observer.finished(now - seq.submitted, len(seq.request.prompt_ids),
                                    seq.stopper.generated, "cancelled")
            return True

    def _accept(self, seq: _Sequence, pick: Pick, now: float,
                out: list[tuple[_Sequence, Chunk | BaseException]]) -> bool:
        """Record a sampled token; True when the sequence has finished."""
        token = pick.token_id
        text, reason = seq.stopper.feed(token, seq.detok.push(token))
        seq.pending = token
        prompt = len(seq.request.prompt_ids)
        logprobs = (pick.logprob,) if pick.logprob is not None and token not in self._eos \
            else ()
        out.append((seq, Chunk(text, (token,), reason, prompt, seq.stopper.generated,
                               logprobs)))
        if reason is not None:
            self._observer.finished(now - seq.submitted, prompt, seq.stopper.generated, reason)
        return reason is not None


def _put_all(items: list[tuple[_Sequence, Chunk | BaseException]]) -> None:
    for seq, item in items:
        seq.queue.put_nowait(item)
