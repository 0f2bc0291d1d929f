"""Thread priority: the workers' nice value, set on the worker threads themselves and read
back from /proc (``priorities.nice_of``: field 19 of /proc/self/task/<tid>/stat), the event
loop's thread untouched. Each test runs with priorities on and off (``priorities``)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pytest

from llmos.hw import priority
from llmos.serving.batcher import Batcher, BatchPolicy

if TYPE_CHECKING:
    from conftest import Priorities  # tests/conftest.py


def in_thread(p: Priorities, work: Callable[[], object]) -> int:
    """Run ``work`` in a new thread, then return that thread's nice value."""
    seen: list[int] = []

    def run() -> None:
        work()
        seen.append(p.nice_of())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return seen[0]


def expected(p: Priorities) -> int:
    return p.base if p.workers is None else p.workers


def test_target_adds_the_increment_up_to_the_lowest_priority() -> None:
    assert priority.target(0, 10) == 10
    assert priority.target(5, 10) == 15
    assert priority.target(15, 10) == 19
    assert priority.target(3, 0) is None


def test_a_thread_is_only_ever_lowered() -> None:
    assert priority.needs_lowering(0, 10)
    assert not priority.needs_lowering(10, 10)
    assert not priority.needs_lowering(12, 10)  # already lower: never raised back
    assert not priority.needs_lowering(0, None)


def test_lower_changes_the_calling_thread_only(priorities: Priorities) -> None:
    assert in_thread(priorities, priority.lower) == expected(priorities)
    assert priorities.nice_of() == priorities.base  # the loop's thread is untouched
    assert priorities.nice_of(os.getpid()) == priorities.base


def test_threads_started_by_a_lowered_build_inherit_its_priority(
        priorities: Priorities) -> None:
    """What onnxruntime's pools rely on: a new thread starts at its creator's nice value."""
    pool: list[int] = []
    builders: list[threading.Thread] = []

    def build() -> str:
        builders.append(threading.current_thread())
        t = threading.Thread(target=lambda: pool.append(priorities.nice_of()))
        t.start()
        t.join()
        return "session"

    assert priority.in_lowered_thread(build) == "session"
    assert pool == [expected(priorities)]
    off = priorities.workers is None
    assert (builders == [threading.current_thread()]) is off  # off: built in the caller
    assert priorities.nice_of() == priorities.base
    with pytest.raises(ValueError, match="bad graph"):
        priority.in_lowered_thread(lambda: (_ for _ in ()).throw(ValueError("bad graph")))


async def test_the_executor_runs_work_lowered_off_the_loop(priorities: Priorities) -> None:
    pool = priority.executor()
    if priorities.workers is None:
        assert pool is None  # the loop keeps its own default executor
        return
    assert pool is not None
    try:
        seen = await asyncio.get_running_loop().run_in_executor(pool, priorities.nice_of)
    finally:
        pool.shutdown()
    assert seen == priorities.workers
    assert priorities.nice_of() == priorities.base


def test_a_refused_setpriority_is_logged_once(priorities: Priorities,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    def refuse(which: int, who: int, prio: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refuse)
    with caplog.at_level(logging.WARNING, logger="llmos.hw.priority"):
        assert in_thread(priorities, priority.lower) == priorities.base  # runs as it is
        assert in_thread(priorities, priority.lower) == priorities.base
    warnings = [r.getMessage() for r in caplog.records if r.name == "llmos.hw.priority"]
    assert warnings == ([] if priorities.workers is None else [
        "cannot lower the worker threads' priority ([Errno 1] Operation not permitted): "
        "inference competes with the event loop for the CPU"])


class NiceModel:
    """Records the nice value of the thread that runs it."""

    def __init__(self, nice_of: Callable[[], int]) -> None:
        self.nice_of = nice_of
        self.nice: list[int] = []

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.nice.append(self.nice_of())
        return {"y": inputs["x"] * 2}


async def test_batcher_workers_run_lowered(priorities: Priorities) -> None:
    """The batcher is built on the loop's thread: its workers lower themselves."""
    model = NiceModel(priorities.nice_of)
    batcher = Batcher("m", [model, model], BatchPolicy(max_batch_size=1))
    want = expected(priorities)
    try:
        x = np.ones((1, 2), np.float32)
        for _ in range(4):
            np.testing.assert_array_equal((await batcher.infer({"x": x}, 10.0))["y"], x * 2)
        assert model.nice and set(model.nice) == {want}
        assert [priorities.nice_of(t.native_id) for t in batcher._threads] == [want, want]
    finally:
        batcher.close()
    assert priorities.nice_of() == priorities.base
