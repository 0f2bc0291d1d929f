"""Under overload the error middleware logs each kind of server-side refusal at most once
per LOG_EVERY_S, saying how many it held back, while every refusal is still answered."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from llmos.errors import InferenceTimeoutError, QueueFullError
from llmos.web.errors import Throttle, error_middleware


def test_throttle_passes_one_per_interval_and_counts_the_rest() -> None:
    now = [100.0]
    throttle = Throttle(every_s=10.0, clock=lambda: now[0])
    assert throttle.passes("QueueFullError") == 0
    assert [throttle.passes("QueueFullError") for _ in range(5)] == [None] * 5
    assert throttle.passes("InferenceTimeoutError") == 0  # another kind: its own budget
    now[0] += 10.0
    assert throttle.passes("QueueFullError") == 5
    assert throttle.passes("QueueFullError") is None


async def test_a_flood_of_503s_logs_one_line_and_answers_every_one(
        aiohttp_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def full(request: web.Request) -> web.Response:
        raise QueueFullError("model m: queue full (256 waiting)", "retry later", 1.0)

    async def late(request: web.Request) -> web.Response:
        raise InferenceTimeoutError("model m: no answer within the deadline", "")

    app = web.Application(middlewares=[error_middleware()])
    app.router.add_get("/full", full)
    app.router.add_get("/late", late)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.WARNING, logger="llmos.web.errors"):
        statuses = [(await client.get("/full")).status for _ in range(50)]
        late_status = (await client.get("/late")).status
    assert statuses == [503] * 50 and late_status == 504
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "queue full" in lines[0] and "deadline" in lines[1]
