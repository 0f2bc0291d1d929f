"""The live charts' data: readings of the metrics, sampled into a bounded ring (pure).

Every tick (a second or two) the sampler collects the samples /metrics would expose (the
serving registry's, through ``ServingMetrics.samples``) and ``reduce``s them to a
``Reading``: cumulative request and token counts, the current queue depth, and the
request-latency histogram merged over models. ``ChartSeries.add`` turns consecutive
readings into a ``ChartPoint`` (rates and quantiles over the last ``window_s``) and keeps
the last ``capacity`` points, served as columns for uPlot.

Which metric names feed which chart is the table ``SeriesSpec``: tensor models report
Triton's names, LLMs vLLM's; names absent from the registry count as zero. Request
latency (tensor and embedding models, milliseconds) and an LLM's time to first token
(seconds) are kept apart: one percentile over both would describe neither.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


class Sample(Protocol):
    """One sample as the metrics library collects it (``prometheus_client.Sample``)."""

    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def value(self) -> float: ...


@dataclass(frozen=True)
class SeriesSpec:
    requests: tuple[str, ...] = (
        "nv_inference_request_success", "nv_inference_request_failure",
        "vllm:request_success_total")
    failures: tuple[str, ...] = ("nv_inference_request_failure",)
    tokens: tuple[str, ...] = ("vllm:generation_tokens_total",)
    waiting: tuple[str, ...] = ("nv_inference_pending_request_count",
                                "vllm:num_requests_waiting")
    running: tuple[str, ...] = ("vllm:num_requests_running",)
    latency: tuple[str, ...] = ("llmos_inference_request_duration_seconds",)
    ttft: tuple[str, ...] = ("vllm:time_to_first_token_seconds",)


DEFAULT_SPEC = SeriesSpec()

Buckets = tuple[tuple[float, float], ...]  # (upper bound "le", cumulative count), ascending


@dataclass(frozen=True)
class Reading:
    t: float  # seconds since the epoch
    requests: float  # cumulative
    failures: float  # cumulative
    tokens: float  # cumulative
    waiting: float  # now
    running: float  # now
    latency: Buckets  # cumulative
    ttft: Buckets = ()  # cumulative


@dataclass(frozen=True)
class ChartPoint:
    t: float
    requests_per_s: float
    failures_per_s: float
    tokens_per_s: float
    p50_ms: float | None  # None: no request finished in the window
    p99_ms: float | None
    ttft_p50_ms: float | None  # None: no LLM request started answering in the window
    ttft_p99_ms: float | None
    waiting: float
    running: float


COLUMNS = ("t", "requests_per_s", "failures_per_s", "tokens_per_s", "p50_ms", "p99_ms",
           "ttft_p50_ms", "ttft_p99_ms", "waiting", "running")


def _merge_histograms(per_series: Mapping[tuple[tuple[str, str], ...], dict[float, float]]
                      ) -> Buckets:
    """Add histograms with possibly different bounds: each counts, at a bound it lacks,
    what it counted at its next lower bound (a lower estimate, exact when bounds agree)."""
    bounds = sorted({le for buckets in per_series.values() for le in buckets})
    merged = []
    for le in bounds:
        total = 0.0
        for buckets in per_series.values():
            below = [b for b in buckets if b <= le]
            if below:
                total += buckets[max(below)]
        merged.append((le, total))
    return tuple(merged)


def _histograms(samples: Iterable[Sample], names: Iterable[str]) -> Buckets:
    wanted = {f"{n}_bucket" for n in names}
    histograms: dict[tuple[tuple[str, str], ...], dict[float, float]] = {}
    for s in samples:
        le = s.labels.get("le", "") if s.name in wanted else ""
        if le:
            rest = tuple(sorted(kv for kv in s.labels.items() if kv[0] != "le"))
            histograms.setdefault((("__name__", s.name), *rest), {})[float(le)] = s.value
    return _merge_histograms(histograms)


def reduce(samples: Iterable[Sample], t: float, spec: SeriesSpec = DEFAULT_SPEC) -> Reading:
    samples = tuple(samples)
    sums = {"requests": 0.0, "failures": 0.0, "tokens": 0.0, "waiting": 0.0, "running": 0.0}
    for field in sums:
        names = set(getattr(spec, field))
        sums[field] = sum(s.value for s in samples
                          if s.name in names and not math.isnan(s.value))
    return Reading(t, sums["requests"], sums["failures"], sums["tokens"], sums["waiting"],
                   sums["running"], _histograms(samples, spec.latency),
                   _histograms(samples, spec.ttft))


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly inside a bucket
    (as Prometheus' histogram_quantile does); None when it counted nothing."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound  # beyond the last finite bound: its value is the best we know
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def _delta(now: Buckets, then: Buckets) -> Buckets:
    before = dict(then)
    out = []
    for le, count in now:
        d = count - before.get(le, 0.0)
        out.append((le, count if d < 0 else d))  # a reset (counters restarted): take it whole
    return tuple(out)


def _rate(now: float, then: float, seconds: float) -> float:
    d = now - then
    return max(0.0, (now if d < 0 else d) / seconds) if seconds > 0 else 0.0


def _ms(q: float, buckets: Buckets) -> float | None:
    v = histogram_quantile(q, buckets)
    return None if v is None else v * 1000.0


def point(now: Reading, then: Reading | None) -> ChartPoint:
    """The chart point at ``now``, with rates and quantiles over the span since ``then``."""
    if then is None or now.t <= then.t:
        return ChartPoint(now.t, 0.0, 0.0, 0.0, None, None, None, None, now.waiting,
                          now.running)
    span = now.t - then.t
    latency, ttft = _delta(now.latency, then.latency), _delta(now.ttft, then.ttft)
    return ChartPoint(
        now.t, _rate(now.requests, then.requests, span),
        _rate(now.failures, then.failures, span), _rate(now.tokens, then.tokens, span),
        _ms(0.5, latency), _ms(0.99, latency), _ms(0.5, ttft), _ms(0.99, ttft),
        now.waiting, now.running)


class ChartSeries:
    """The last ``capacity`` points; rates and quantiles over a sliding ``window_s``."""

    def __init__(self, capacity: int = 600, window_s: float = 10.0) -> None:
        self.capacity = capacity
        self.window_s = window_s
        self._points: deque[ChartPoint] = deque(maxlen=capacity)
        self._readings: deque[Reading] = deque()

    def __len__(self) -> int:
        return len(self._points)

    def add(self, reading: Reading) -> ChartPoint:
        while len(self._readings) > 1 and reading.t - self._readings[1].t >= self.window_s:
            self._readings.popleft()
        then = self._readings[0] if self._readings else None
        p = point(reading, then)
        self._readings.append(reading)
        self._points.append(p)
        return p

    def points(self) -> tuple[ChartPoint, ...]:
        return tuple(self._points)

    def columns(self, since: float | None = None) -> dict[str, list[float | None]]:
        """Column arrays (uPlot's data layout), optionally only points after ``since``."""
        pts = [p for p in self._points if since is None or p.t > since]
        return {c: [getattr(p, c) for p in pts] for c in COLUMNS}
