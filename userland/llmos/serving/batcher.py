"""Per-model scheduling: a bounded queue, dynamic batching, one worker thread per instance.

The event loop calls ``submit`` (never blocks: a full queue raises ``QueueFullError``) and
awaits the returned future; worker threads take batches off the queue, run the blocking
runtime and hand results back with one ``call_soon_threadsafe`` per batch.

Batching rules:

* Requests are concatenated along dim 0 and results split back by each request's rows.
* Only requests whose inputs agree on names, datatypes and *trailing* shapes share a batch
  (grouping, not padding: zero padding changes the answer of models without a mask). A
  request of another shape waits for the next batch, in arrival order, so nothing starves.
* BYTES inputs (text) also group by length class (the bit length of the longest element's
  byte count): a runtime pads a batch of texts to its longest, so mixing a short text with
  long ones wastes compute and, in int8 models with dynamic quantisation (activation
  scales per batch), moves the short text's answer measurably.
* A batch holds at most ``max_batch_size`` rows; a single larger request runs on its own.
* The worker waits up to ``max_queue_delay`` for a batch to fill, but only while more
  requests are known to be on their way (``expect()`` was called for them and they are
  not queued yet): a lone request at concurrency 1 is never delayed.
* If a batch fails, its requests are retried one by one, so one bad request does not
  fail its neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from llmos.errors import BadRequestError, InferenceTimeoutError, NotReadyError, QueueFullError
from llmos.hw import priority
from llmos.serving.workers import supervise

log = logging.getLogger(__name__)

Tensors = Mapping[str, np.ndarray]
Infer = Callable[[Tensors], dict[str, np.ndarray]]


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 8  # rows per batch; 1 = no batching
    max_queue_delay_s: float = 0.002
    queue_size: int = 256
    batchable: bool = True  # the model takes a dynamic leading batch dimension


class BatchObserver(Protocol):
    """Receives per-batch statistics (called from worker threads)."""

    def batch(self, requests: int, rows: int, queue_s: float, compute_s: float) -> None: ...


class _NoObserver:
    def batch(self, requests: int, rows: int, queue_s: float, compute_s: float) -> None:
        pass


class _Item:
    __slots__ = ("continues", "deadline", "enqueued", "expired", "future", "inputs", "key",
                 "loop", "rows", "timeout_s")

    def __init__(self, inputs: Tensors, rows: int, key: object,
                 loop: asyncio.AbstractEventLoop, timeout_s: float,
                 continues: bool = False) -> None:
        self.continues = continues  # a further slice of a request already admitted
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.loop = loop
        self.future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
        self.enqueued = time.perf_counter()
        self.timeout_s = timeout_s
        self.deadline = self.enqueued + timeout_s
        self.expired = False

    def timeout_error(self, model: str) -> InferenceTimeoutError:
        return InferenceTimeoutError(
            f"model {model!r}: no result within {self.timeout_s:g} s",
            "retry later, or raise timeout_s / server.request_timeout_s")


Result = dict[str, np.ndarray] | BaseException


def _deliver(model: str, items: Sequence[_Item], results: Sequence[Result]) -> None:
    """Runs on the event loop: resolve each future not already timed out or cancelled.

    A result that arrives after its deadline is a timeout all the same (the deadline
    timer may not have had the CPU to fire yet).
    """
    now = time.perf_counter()
    for item, result in zip(items, results, strict=True):
        fut = item.future
        if fut.done():
            continue
        if now > item.deadline:
            fut.set_exception(item.timeout_error(model))
        elif isinstance(result, BaseException):
            fut.set_exception(result)
        else:
            fut.set_result(result)


class Batcher:
    """Schedules one model's requests onto its runtime instances (``infer`` callables)."""

    def __init__(self, name: str, instances: Sequence[Infer], policy: BatchPolicy,
                 observer: BatchObserver | None = None) -> None:
        if not instances:
            raise ValueError("a batcher needs at least one instance")
        self.name = name
        self.policy = policy
        self._observer = observer or _NoObserver()
        self._batching = policy.batchable and policy.max_batch_size > 1
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._arriving = 0  # written by the event loop only
        self._closed = False
        self._threads = [  # a crashed worker is restarted (its batch answers by timeout)
            threading.Thread(target=supervise(f"infer-{name}-{i}", self._worker(infer),
                                              lambda: None),
                             daemon=True, name=f"infer-{name}-{i}")
            for i, infer in enumerate(instances)
        ]
        for t in self._threads:
            t.start()

    # --- event-loop side -----------------------------------------------------------
    @property
    def depth(self) -> int:
        """Requests waiting in the queue (not yet taken by a worker)."""
        return len(self._queue)

    def expect(self) -> None:
        """A request for this model has arrived and is being decoded (batching hint)."""
        self._arriving += 1

    def unexpect(self) -> None:
        """An expected request will not be submitted (it failed to decode)."""
        self._arriving = max(0, self._arriving - 1)

    def _shape_key(self, inputs: Tensors) -> tuple[int, object]:
        if not self._batching:
            return 1, None
        rows = -1
        key: list[tuple[object, ...]] = []
        for name in sorted(inputs):
            arr = inputs[name]
            if arr.ndim == 0:
                raise BadRequestError(f"model {self.name!r}: input {name!r} has no batch "
                                      "dimension", "give every input a leading batch dimension")
            if rows < 0:
                rows = arr.shape[0]
            elif arr.shape[0] != rows:
                raise BadRequestError(
                    f"model {self.name!r}: inputs disagree on the batch size (dim 0)",
                    "every input of one request needs the same leading dimension")
            if arr.dtype.kind == "O":
                longest = max((len(x) if isinstance(x, bytes | str) else 0 for x in arr.flat),
                              default=0)
                key.append((name, "O", arr.shape[1:], longest.bit_length()))
            else:
                key.append((name, arr.dtype.str, arr.shape[1:]))
        return rows, tuple(key)

    def submit(self, inputs: Tensors, timeout_s: float = 3600.0, *,
               expected: bool = False, admitted: bool = False) -> _Item:
        """Queue a request (call on the event loop). ``expected``: ``expect()`` preceded it.
        ``admitted``: a further slice of a request already queued (``llmos.serving.slices``),
        never refused for a full queue half-way through."""
        if expected:
            self._arriving = max(0, self._arriving - 1)
        if self._closed:
            raise NotReadyError(f"model {self.name!r} is being unloaded",
                                "retry once it is loaded again")
        if not admitted and self._waiting_requests() >= self.policy.queue_size:
            raise QueueFullError(
                f"model {self.name!r}: queue is full ({self.policy.queue_size} requests)",
                "retry later, lower the request rate, or raise queue_size / instances",
                retry_after_s=1.0)
        rows, key = self._shape_key(inputs)
        item = _Item(inputs, rows, key, asyncio.get_running_loop(), timeout_s,
                     continues=admitted)
        with self._cond:
            self._queue.append(item)
            self._cond.notify()
        return item

    def _waiting_requests(self) -> int:
        """Requests queued and not yet started: the further slices of a request already
        being served wait beside them but are not new requests (``queue_size`` counts
        requests, whichever way they are cut)."""
        with self._cond:
            return sum(1 for item in self._queue if not item.continues)

    async def infer(self, inputs: Tensors, timeout_s: float, *,
                    expected: bool = False, admitted: bool = False) -> dict[str, np.ndarray]:
        """Submit and await the result within ``timeout_s`` (queueing included)."""
        item = self.submit(inputs, timeout_s, expected=expected, admitted=admitted)
        timer = item.loop.call_later(timeout_s, self._expire, item)
        try:
            return await item.future
        except asyncio.CancelledError:
            self._discard(item)
            raise
        finally:
            timer.cancel()

    def _expire(self, item: _Item) -> None:
        if item.future.done():
            return
        self._discard(item)
        item.future.set_exception(item.timeout_error(self.name))

    def _discard(self, item: _Item) -> None:
        item.expired = True
        # If a worker already took it, its result is dropped on delivery.
        with self._cond, contextlib.suppress(ValueError):
            self._queue.remove(item)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the workers after their current batch; queued requests fail (blocking)."""
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        error = NotReadyError(f"model {self.name!r} was unloaded", "retry once it is loaded")
        for item in pending:
            item.loop.call_soon_threadsafe(_deliver, self.name, [item], [error])
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout_s)

    # --- worker side ---------------------------------------------------------------
    def _worker(self, infer: Infer) -> Callable[[], None]:
        return lambda: self._work(infer)

    def _fill(self, batch: list[_Item], rows: int) -> int:
        """Move compatible queued requests into ``batch`` (lock held). Returns its rows."""
        q = self._queue
        key = batch[0].key
        limit = self.policy.max_batch_size
        i = 0
        while i < len(q) and rows < limit:
            item = q[i]
            if item.key == key and rows + item.rows <= limit:
                del q[i]
                batch.append(item)
                rows += item.rows
            else:
                i += 1
        return rows

    def _take(self) -> list[_Item] | None:
        """Block until a batch is available; None once closed."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            if self._closed:
                return None
            first = self._queue.popleft()
            batch = [first]
            if not self._batching:
                return batch
            rows = self._fill(batch, first.rows)
            deadline = first.enqueued + self.policy.max_queue_delay_s
            while rows < self.policy.max_batch_size and self._arriving > 0 and not self._closed:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                rows = self._fill(batch, rows)
            return batch

    def _work(self, infer: Infer) -> None:
        priority.lower()  # below the event loop (llmos.hw.priority)
        while (batch := self._take()) is not None:
            start = time.perf_counter()
            batch = [it for it in batch if not it.expired and it.deadline > start]
            if not batch:
                continue  # past their deadline: the timers answer them
            results = self._run(infer, batch)
            end = time.perf_counter()
            try:
                self._observer.batch(len(batch), sum(it.rows for it in batch),
                                     sum(start - it.enqueued for it in batch), end - start)
            except Exception:  # metrics must never stop inference
                log.exception("batch observer failed")
            try:
                batch[0].loop.call_soon_threadsafe(_deliver, self.name, batch, results)
            except RuntimeError:  # the event loop is gone (shutting down)
                return

    def _run(self, infer: Infer, batch: list[_Item]) -> list[Result]:
        if len(batch) == 1:
            return [self._call(infer, batch[0].inputs)]
        names = list(batch[0].inputs)
        merged = {n: np.concatenate([it.inputs[n] for it in batch]) for n in names}
        outcome = self._call(infer, merged)
        total = sum(it.rows for it in batch)
        if isinstance(outcome, BaseException) or any(
                a.ndim == 0 or a.shape[0] != total for a in outcome.values()):
            if not isinstance(outcome, BaseException):
                log.warning("model %s: batched outputs do not have %d rows; running the "
                            "batch's requests one by one", self.name, total)
            return [self._call(infer, it.inputs) for it in batch]
        results: list[Result] = []
        offset = 0
        for it in batch:
            end = offset + it.rows
            results.append({n: a[offset:end] for n, a in outcome.items()})
            offset = end
        return results

    @staticmethod
    def _call(infer: Infer, inputs: Tensors) -> Result:
        try:
            return infer(inputs)
        except Exception as exc:
            return exc
