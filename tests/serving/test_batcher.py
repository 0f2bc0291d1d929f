"""The batcher: batches form under concurrency, split back correctly, and fail one by one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from llmos.errors import BadRequestError, InferenceTimeoutError, NotReadyError, QueueFullError
from llmos.serving.batcher import Batcher, BatchPolicy


class Model:
    """A real (numpy) model: y = 2x + row sums; can be held at a gate to build up a queue."""

    def __init__(self) -> None:
        self.batches: list[int] = []  # rows per execution
        self.shapes: list[tuple[int, ...]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.set()
        self.gate.wait(10)
        x = inputs["x"]
        if np.isnan(x).any():
            raise BadRequestError("x contains NaN", "send finite numbers")
        self.batches.append(x.shape[0])
        self.shapes.append(x.shape)
        return {"y": 2 * x, "s": x.reshape(x.shape[0], -1).sum(axis=1)}


Make = Callable[..., Batcher]


@pytest.fixture
def model() -> Model:
    return Model()


@pytest.fixture
def make(model: Model) -> Iterator[Make]:
    made: list[Batcher] = []

    def build(**policy: Any) -> Batcher:
        b = Batcher("m", [model], BatchPolicy(**policy))
        made.append(b)
        return b

    yield build
    model.gate.set()
    for b in made:
        b.close()


def _x(i: int, cols: int = 4, rows: int = 1) -> np.ndarray:
    return np.full((rows, cols), float(i), np.float32)


async def _hold_first(b: Batcher, model: Model) -> asyncio.Task[dict[str, np.ndarray]]:
    """Occupy the worker with one request held at the gate."""
    model.gate.clear()
    model.entered.clear()
    first = asyncio.create_task(b.infer({"x": _x(-1)}, 10))
    await asyncio.to_thread(model.entered.wait, 5)
    return first


async def test_batches_form_and_results_split_back(make: Make, model: Model) -> None:
    b = make(max_batch_size=8, max_queue_delay_s=0.0)
    first = await _hold_first(b, model)
    tasks = [asyncio.create_task(b.infer({"x": _x(i)}, 10)) for i in range(15)]
    await asyncio.sleep(0.01)
    assert b.depth == 15
    model.gate.set()
    results = await asyncio.gather(*tasks)
    await first
    assert model.batches == [1, 8, 7]
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out["y"], 2 * _x(i))
        assert out["s"].tolist() == [4.0 * i]


async def test_multi_row_requests_respect_the_row_limit(make: Make, model: Model) -> None:
    b = make(max_batch_size=4, max_queue_delay_s=0.0)
    first = await _hold_first(b, model)
    tasks = [asyncio.create_task(b.infer({"x": _x(i, rows=r)}, 10))
             for i, r in enumerate([2, 2, 3, 6])]
    await asyncio.sleep(0.01)
    model.gate.set()
    results = await asyncio.gather(*tasks)
    await first
    assert model.batches == [1, 4, 3, 6]  # 2+2; 3 alone (3+6 > 4); 6 alone, over the limit
    assert [r["y"].shape[0] for r in results] == [2, 2, 3, 6]
    np.testing.assert_array_equal(results[3]["y"], 2 * _x(3, rows=6))


async def test_different_trailing_shapes_are_never_mixed(make: Make, model: Model) -> None:
    b = make(max_batch_size=8, max_queue_delay_s=0.0)
    first = await _hold_first(b, model)
    cols = [4, 3, 4, 3, 4]
    tasks = [asyncio.create_task(b.infer({"x": _x(i, cols=c)}, 10)) for i, c in enumerate(cols)]
    await asyncio.sleep(0.01)
    model.gate.set()
    results = await asyncio.gather(*tasks)
    await first
    assert sorted(model.shapes[1:]) == [(2, 3), (3, 4)]
    for i, (c, out) in enumerate(zip(cols, results, strict=True)):
        np.testing.assert_array_equal(out["y"], 2 * _x(i, cols=c))


async def test_texts_group_by_length_class() -> None:
    seen: list[list[bytes]] = []
    gate = threading.Event()

    def embed(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        gate.wait(10)
        texts = list(inputs["text"])
        seen.append(texts)
        return {"n": np.array([len(t) for t in texts])}

    b = Batcher("m", [embed], BatchPolicy(max_batch_size=8, max_queue_delay_s=0.0))
    try:
        first = asyncio.create_task(b.infer({"text": np.array([b"x"], object)}, 10))
        await asyncio.sleep(0.05)  # the worker holds the first one at the gate
        texts = [b"ok", b"a" * 70, b"yes", b"b" * 100, b"c" * 1000]
        tasks = [asyncio.create_task(b.infer({"text": np.array([t], object)}, 10))
                 for t in texts]
        await asyncio.sleep(0.01)
        gate.set()
        results = await asyncio.gather(*tasks)
        await first
    finally:
        b.close()
    assert [r["n"].tolist() for r in results] == [[len(t)] for t in texts]
    assert seen[1:] == [[b"ok", b"yes"], [b"a" * 70, b"b" * 100], [b"c" * 1000]]


async def test_a_bad_request_does_not_fail_its_batch(make: Make, model: Model) -> None:
    b = make(max_batch_size=8, max_queue_delay_s=0.0)
    first = await _hold_first(b, model)
    xs = [_x(0), np.full((1, 4), np.nan, np.float32), _x(2)]
    tasks = [asyncio.create_task(b.infer({"x": x}, 10)) for x in xs]
    await asyncio.sleep(0.01)
    model.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await first
    assert isinstance(results[1], BadRequestError)
    np.testing.assert_array_equal(results[0]["y"], 2 * xs[0])  # type: ignore[index]
    np.testing.assert_array_equal(results[2]["y"], 2 * xs[2])  # type: ignore[index]


async def test_full_queue_refuses_with_retry_after(make: Make, model: Model) -> None:
    b = make(max_batch_size=1, queue_size=3)
    first = await _hold_first(b, model)
    tasks = [asyncio.create_task(b.infer({"x": _x(i)}, 10)) for i in range(3)]
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFullError) as err:
        b.submit({"x": _x(9)})
    assert err.value.retry_after_s > 0
    model.gate.set()
    assert len(await asyncio.gather(*tasks)) == 3
    await first


async def test_queue_size_counts_requests_not_their_further_slices(
        make: Make, model: Model) -> None:
    """A sliced request's further slices wait in the queue too, but a new request is judged
    by the requests waiting: with queue_size 2, one sliced request queued (two slices) and
    a second request fit; a third is refused."""
    b = make(max_batch_size=1, queue_size=2)
    first = await _hold_first(b, model)
    sliced = [asyncio.create_task(b.infer({"x": _x(1)}, 10)),
              asyncio.create_task(b.infer({"x": _x(2)}, 10, admitted=True))]
    await asyncio.sleep(0.01)
    second = asyncio.create_task(b.infer({"x": _x(3)}, 10))
    await asyncio.sleep(0.01)
    assert b.depth == 3
    with pytest.raises(QueueFullError):
        b.submit({"x": _x(9)})
    model.gate.set()
    assert len(await asyncio.gather(*sliced, second)) == 3
    await first


async def test_timeout_expires_and_the_request_never_runs(make: Make, model: Model) -> None:
    b = make(max_batch_size=8, max_queue_delay_s=0.0)
    first = await _hold_first(b, model)
    t0 = time.perf_counter()
    with pytest.raises(InferenceTimeoutError, match=r"within 0\.05 s"):
        await b.infer({"x": _x(5)}, 0.05)
    assert time.perf_counter() - t0 < 1.0
    assert b.depth == 0  # expired requests leave the queue at once
    model.gate.set()
    await first
    await asyncio.sleep(0.05)
    assert model.batches == [1]


async def test_lone_request_is_not_delayed(make: Make, model: Model) -> None:
    b = make(max_batch_size=8, max_queue_delay_s=0.5)
    t0 = time.perf_counter()
    await b.infer({"x": _x(1)}, 10)
    assert time.perf_counter() - t0 < 0.25


async def test_worker_waits_for_expected_requests(make: Make, model: Model) -> None:
    b = make(max_batch_size=8, max_queue_delay_s=0.5)
    b.expect()  # a second request is being decoded
    one = asyncio.create_task(b.infer({"x": _x(1)}, 10))
    await asyncio.sleep(0.05)
    two = asyncio.create_task(b.infer({"x": _x(2)}, 10, expected=True))
    await asyncio.gather(one, two)
    assert model.batches == [2]


async def test_no_batching_when_not_batchable(make: Make, model: Model) -> None:
    b = make(max_batch_size=8, batchable=False)
    first = await _hold_first(b, model)
    tasks = [asyncio.create_task(b.infer({"x": _x(i)}, 10)) for i in range(3)]
    await asyncio.sleep(0.01)
    model.gate.set()
    await asyncio.gather(*tasks)
    await first
    assert model.batches == [1, 1, 1, 1]


async def test_inputs_must_agree_on_batch_size(make: Make) -> None:
    b = make(max_batch_size=8)
    with pytest.raises(BadRequestError, match="disagree on the batch size"):
        b.submit({"x": _x(1, rows=2), "z": _x(1, rows=3)})


async def test_close_fails_queued_requests(make: Make, model: Model) -> None:
    b = make(max_batch_size=1)
    first = await _hold_first(b, model)
    queued = asyncio.create_task(b.infer({"x": _x(1)}, 10))
    await asyncio.sleep(0.01)
    closer = asyncio.create_task(asyncio.to_thread(b.close))
    with pytest.raises(NotReadyError, match="unloaded"):
        await queued
    model.gate.set()
    await first  # the batch in progress still completes
    await closer
    with pytest.raises(NotReadyError):
        b.submit({"x": _x(1)})


async def test_several_instances_run_in_parallel() -> None:
    barrier = threading.Barrier(2, timeout=5)

    def instance(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        barrier.wait()  # both instances must be inside at once, or this times out
        return {"y": inputs["x"]}

    b = Batcher("m", [instance, instance], BatchPolicy(max_batch_size=1))
    try:
        outs = await asyncio.gather(b.infer({"x": _x(1)}, 10), b.infer({"x": _x(2)}, 10))
        assert [o["y"][0, 0] for o in outs] == [1.0, 2.0]
    finally:
        b.close()
