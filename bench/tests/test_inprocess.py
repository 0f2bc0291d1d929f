from __future__ import annotations

import threading
import time

import pytest

from bench import inprocess


def test_clients_overlap_and_every_call_is_counted() -> None:
    lock = threading.Lock()
    state = {"now": 0, "peak": 0, "calls": 0}

    def call() -> None:
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.01)
        with lock:
            state["now"] -= 1

    result = inprocess.run(call, concurrency=4, seconds=0.3, warmup_s=0)
    assert state["peak"] == 4  # four closed-loop clients really ran side by side
    assert result.requests == state["calls"]
    assert result.p50_ms >= 10.0  # each call sleeps 10 ms: a latency can only be longer


def test_zero_concurrency_is_refused() -> None:
    with pytest.raises(ValueError):
        inprocess.run(lambda: None, concurrency=0, seconds=0.1, warmup_s=0)


def test_the_process_cpu_of_the_measured_run_is_recorded() -> None:
    def busy() -> None:
        end = time.process_time() + 0.002
        while time.process_time() < end:
            pass

    idle = inprocess.run(lambda: time.sleep(0.005), concurrency=1, seconds=0.3, warmup_s=0)
    spinning = inprocess.run(busy, concurrency=1, seconds=0.3, warmup_s=0)
    # Each busy call burns 2 ms of this process's CPU, each idle one next to nothing.
    assert spinning.cpu_s >= 0.95 * 0.002 * spinning.requests > 0
    assert idle.cpu_s < 0.5 * 0.002 * idle.requests
