"""A worker thread that crashes is noticed (the crash log /health reads) and replaced."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from llmos.errors import InferenceTimeoutError, LlmosError
from llmos.llm.engine import Engine, EngineLimits, NoObserver
from llmos.llm.generation import GenerationRequest
from llmos.llm.sampling import SamplingParams
from llmos.serving.batcher import Batcher, BatchPolicy
from llmos.serving.workers import CRASHES, CrashLog, supervise


class Boom(BaseException):
    """Not an Exception: what no request-level handler catches."""


def test_supervise_runs_the_loop_again_and_records_the_crash() -> None:
    log, runs, cleaned = CrashLog(), [], []

    def loop() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise Boom("bad luck")

    supervise("w", loop, lambda: cleaned.append(1), log, pause_s=0)()
    assert len(runs) == 3 and len(cleaned) == 2 and log.total == 2
    assert "worker thread w crashed (Boom: bad luck)" in log.warnings()[0]
    assert log.warnings(now=10**12) == ()  # old crashes leave /health


class OnceBoom(NoObserver):
    """Raises from the first batch (a Batcher's observer) or the first step with a running
    sequence (an Engine's)."""

    def __init__(self) -> None:
        self.fired = False

    def batch(self, requests: int, rows: int, queue_s: float, compute_s: float) -> None:
        if not self.fired:
            self.fired = True
            raise Boom("observer")

    def scheduled(self, running: int, waiting: int) -> None:
        if running and not self.fired:
            self.fired = True
            raise Boom("observer")


async def test_a_crashed_inference_worker_is_replaced_and_reported() -> None:
    before = CRASHES.total
    b = Batcher("crashy", [lambda x: {"y": x["x"] * 2}], BatchPolicy(max_batch_size=1),
                OnceBoom())
    try:
        with pytest.raises(InferenceTimeoutError):  # its batch died with the worker
            await b.infer({"x": np.ones((1, 2))}, 0.5)
        out = await b.infer({"x": np.ones((1, 2))}, 5)  # the replacement serves
        assert out["y"].tolist() == [[2.0, 2.0]]
    finally:
        b.close()
    assert CRASHES.total == before + 1
    assert any("infer-crashy-0" in w for w in CRASHES.warnings())


class Runner:
    capacity = 64
    prefix_bytes = None

    def prefill(self, slot: int, token_ids: Sequence[int], interrupt: object = None,
                start: int = 0) -> np.ndarray:
        row: np.ndarray = np.eye(8, dtype=np.float32)[3]
        return row

    def decode(self, tokens: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
        return np.stack([np.eye(8, dtype=np.float32)[3] for _ in tokens])

    def move(self, src: int, dst: int, length: int) -> None:
        pass

    def restore(self, slot: int, token_ids: Sequence[int]) -> tuple[int, None]:
        return 0, None

    def remember(self, slot: int, token_ids: Sequence[int], logits: object = None) -> None:
        pass


async def test_a_crashed_engine_fails_its_running_sequences_and_serves_on() -> None:
    e = Engine(Runner(), lambda ids: "x" * len(ids), frozenset(), EngineLimits(),
               OnceBoom(), name="crashy")
    greedy = SamplingParams(temperature=0.0)
    try:
        with pytest.raises(LlmosError, match="worker crashed"):
            await asyncio.wait_for(e.submit(GenerationRequest((1,), 5, greedy)).collect(), 10)
        done = await asyncio.wait_for(e.submit(GenerationRequest((1,), 5, greedy)).collect(),
                                      10)
        assert done.completion_tokens == 5
    finally:
        e.close()
    assert any("engine-crashy" in w for w in CRASHES.warnings())
