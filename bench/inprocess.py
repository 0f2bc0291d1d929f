"""The limit: the same model called in process by N threads, no HTTP, no JSON.

Each thread is a closed-loop client (as each wrk connection is): call, record the latency,
call again, until the time is up. The process's CPU seconds over the measured run are
recorded beside it (nothing else runs in this process meanwhile).
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from bench.load import LoadResult, summarize


def _closed_loop(call: Callable[[], object], concurrency: int, seconds: float) -> LoadResult:
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client(mine: list[float]) -> None:
        start.wait()
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                return
            call()
            mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(lat,), daemon=True) for lat in latencies]
    for t in threads:
        t.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return summarize([x for lat in latencies for x in lat], elapsed)


def run(call: Callable[[], object], concurrency: int, seconds: float,
        warmup_s: float) -> LoadResult:
    """Warm up, then measure ``concurrency`` threads calling ``call`` for ``seconds``."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if warmup_s > 0:
        _closed_loop(call, concurrency, warmup_s)
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = _closed_loop(call, concurrency, seconds)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return replace(result, cpu_s=(after.ru_utime + after.ru_stime)
                   - (before.ru_utime + before.ru_stime))
