"""A request of more rows than a batch holds, run as slices of ``max_batch_size`` rows.

Before, a 2,000-row request ran as one batch: minutes of compute that nothing could stop,
long after its client had its 504. Now each slice is queued on its own, behind whatever
other requests were queued meanwhile (a large request no longer holds the workers), and
one deadline covers them all: once it passes (or the caller is cancelled: a client gone),
no further slice is queued and the queued ones are withdrawn, so at most the slices
already running finish (each bounded by ``max_batch_size`` rows).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import numpy as np

from llmos.errors import InferenceTimeoutError

Tensors = Mapping[str, np.ndarray]
RunSlice = Callable[[Tensors, float, bool], Awaitable[dict[str, np.ndarray]]]

#: Slices of one request in flight at once: one running, one queued behind it.
WINDOW = 2


def rows_of(inputs: Tensors) -> int:
    """The leading dimension shared by the inputs (0 for scalars)."""
    first = next(iter(inputs.values()), None)
    return 0 if first is None or first.ndim == 0 else int(first.shape[0])


def split(inputs: Tensors, size: int) -> list[dict[str, np.ndarray]]:
    """``inputs`` cut along dim 0 into parts of at most ``size`` rows (views, no copies)."""
    rows = rows_of(inputs)
    return [{n: a[start:start + size] for n, a in inputs.items()}
            for start in range(0, max(rows, 1), size)]


def join(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The slices' outputs put back together along dim 0."""
    if len(parts) == 1:
        return parts[0]
    return {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}


async def run_sliced(run: RunSlice, inputs: Tensors, size: int, timeout_s: float, *,
                     model: str) -> dict[str, np.ndarray]:
    """``run(part, remaining_s, first)`` for each slice (``first``: the request's first
    slice, the one a queue may refuse), ``WINDOW`` at a time, in order, all within
    ``timeout_s``; the first failure cancels the rest."""
    parts = split(inputs, size)
    if len(parts) == 1:
        return await run(parts[0], timeout_s, True)
    deadline = time.monotonic() + timeout_s
    results: list[dict[str, np.ndarray] | None] = [None] * len(parts)
    pending: set[asyncio.Task[None]] = set()

    async def one(index: int, first: bool) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InferenceTimeoutError(
                f"model {model!r}: no result within {timeout_s:g} s",
                "send fewer rows, or raise timeout_s / server.request_timeout_s")
        results[index] = await run(parts[index], remaining, first)

    try:
        for index in range(len(parts)):
            while len(pending) >= WINDOW:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # raises the first failure
            pending.add(asyncio.ensure_future(one(index, index == 0)))
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
    finally:
        for task in pending:
            task.cancel()  # the batcher withdraws a cancelled slice from its queue
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return join([r for r in results if r is not None])
