"""Live-chart data: histogram quantiles and rates over a window, fed by the real serving
metrics registry's samples."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from types import SimpleNamespace

import pytest
from aiohttp import web

from llmos.admin.series import ChartSeries, Reading, histogram_quantile, reduce
from llmos.llm.metrics import metrics_for
from llmos.serving.metrics import ServingMetrics
from llmos.web.admin.sampler import sample_once
from llmos.web.admin.state import ADMIN
from llmos.web.keys import DATAPLANE


def test_quantile_interpolates_inside_a_bucket() -> None:
    buckets = ((0.1, 0.0), (0.2, 50.0), (0.4, 100.0), (math.inf, 100.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.396)
    assert histogram_quantile(0.5, ((0.1, 0.0), (math.inf, 0.0))) is None


def test_quantile_beyond_the_last_bound_is_that_bound() -> None:
    assert histogram_quantile(0.99, ((1.0, 1.0), (math.inf, 10.0))) == 1.0


def _reading(metrics: ServingMetrics, t: float) -> Reading:
    return reduce(metrics.samples(), t)


def test_rates_and_latency_from_the_serving_registry() -> None:
    metrics = ServingMetrics()
    a, b = metrics.model("a", "1"), metrics.model("b", "2")
    series = ChartSeries(capacity=100, window_s=10.0)
    first = series.add(_reading(metrics, 100.0))
    assert first.requests_per_s == 0 and first.p50_ms is None
    for _ in range(30):
        a.request(True, 0.003)  # 3 ms: bucket (2.5 ms, 5 ms]
    for _ in range(10):
        b.request(False, 0.2)  # 200 ms: bucket (100 ms, 250 ms]
    p = series.add(_reading(metrics, 102.0))
    assert p.requests_per_s == pytest.approx(40 / 2.0)
    assert p.failures_per_s == pytest.approx(10 / 2.0)
    assert p.p50_ms is not None and 2.5 < p.p50_ms <= 5.0
    assert p.p99_ms is not None and 100.0 < p.p99_ms <= 250.0
    quiet = series.add(_reading(metrics, 112.5))
    assert quiet.requests_per_s == 0 and quiet.p50_ms is None  # nothing in the last 10 s
    assert len(series) == 3


def test_queue_depth_is_read_from_the_pending_gauge() -> None:
    metrics = ServingMetrics()
    m = metrics.model("a", "1")
    m.pending = lambda: 7
    p = ChartSeries().add(_reading(metrics, 1.0))
    assert p.waiting == 7


def test_the_ring_keeps_the_last_points_and_serves_columns_since() -> None:
    metrics = ServingMetrics()
    series = ChartSeries(capacity=5, window_s=2.0)
    for t in range(10):
        series.add(_reading(metrics, float(t)))
    cols = series.columns()
    assert cols["t"] == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert set(cols) == {"t", "requests_per_s", "failures_per_s", "tokens_per_s", "p50_ms",
                         "p99_ms", "ttft_p50_ms", "ttft_p99_ms", "waiting", "running"}
    assert series.columns(since=7.0)["t"] == [8.0, 9.0]


def test_llm_tokens_time_to_first_token_and_running_from_the_llm_metrics() -> None:
    metrics = ServingMetrics()
    llm = metrics_for(metrics.registry).observer("chat")
    series = ChartSeries(capacity=10, window_s=10.0)
    series.add(_reading(metrics, 0.0))
    llm.scheduled(running=2, waiting=3)
    for _ in range(4):
        llm.first_token(0.03)  # bucket (20 ms, 40 ms]
        llm.finished(1.0, prompt_tokens=10, generated_tokens=25, reason="stop")
    p = series.add(_reading(metrics, 5.0))
    assert p.tokens_per_s == pytest.approx(100 / 5.0)
    assert p.requests_per_s == pytest.approx(4 / 5.0)
    assert p.ttft_p50_ms is not None and 20.0 < p.ttft_p50_ms <= 40.0
    assert p.p50_ms is None  # LLM requests do not blur the tensor latency
    assert (p.running, p.waiting) == (2, 3)


async def test_the_sampler_reads_the_metrics_off_the_event_loop() -> None:
    """A reading takes milliseconds (/proc/self/smaps_rollup): requests on the loop must not
    wait for it."""
    metrics = ServingMetrics()
    metrics.model("a", "1").request(True, 0.003)
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def slow_samples() -> object:
        seen.append(threading.get_ident())
        time.sleep(0.3)
        return metrics.samples()

    app = web.Application()
    app[DATAPLANE] = SimpleNamespace(metrics=SimpleNamespace(samples=slow_samples))  # type: ignore[assignment]
    app[ADMIN] = SimpleNamespace(series=ChartSeries(capacity=10, window_s=10.0))  # type: ignore[assignment]
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    point = await sample_once(app)
    ticker.cancel()
    assert seen and seen[0] != loop_thread
    assert ticks >= 10  # the loop kept running while the reading took 0.3 s
    assert point.requests_per_s == 0
