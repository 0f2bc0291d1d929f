"""Prometheus metrics (the only prometheus_client import), one CollectorRegistry per app.

Tensor models report Triton's series under Triton's exact names, labelled ``model`` and
``version``, so existing dashboards work unchanged:

    nv_inference_request_success, nv_inference_request_failure, nv_inference_count,
    nv_inference_exec_count, nv_inference_request_duration_us,
    nv_inference_queue_duration_us, nv_inference_compute_infer_duration_us,
    nv_inference_pending_request_count

prometheus_client appends ``_total`` to every series typed "counter", which would break
those names, so the cumulative ``nv_*`` series are exposed untyped (they are monotonic).
The hot path only adds to plain numbers; a collector reads them at scrape time. Beside
them: request-latency and batch-size histograms, model state, load time and load
failures under ``llmos_*``, where each model runs (``llmos_model_placement``), and the
machine's resources (CPU, RAM, this process's resident and locked memory, hugepages,
weight memory per model and per accelerator) read at scrape time from the reader the
supervisor attaches with ``watch_resources``, plus the count of memory fallbacks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from llmos.state import ModelState, ModelStatus

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ModelMetrics:
    """Counters of one model version. ``batch`` runs in worker threads, ``request`` on the loop."""

    def __init__(self, name: str, version: str, latency: Histogram, batch_size: Histogram) -> None:
        self.name = name
        self.version = version
        self.success = 0
        self.failure = 0
        self.inference_count = 0  # rows inferred (a batch of N rows counts N)
        self.exec_count = 0  # model executions (batches)
        self.request_us = 0.0
        self.queue_us = 0.0
        self.compute_us = 0.0
        self.pending: Callable[[], int] = lambda: 0
        self._lock = threading.Lock()
        self._latency = latency.labels(name, version)
        self._batch_size = batch_size.labels(name, version)

    def batch(self, requests: int, rows: int, queue_s: float, compute_s: float) -> None:
        with self._lock:
            self.exec_count += 1
            self.inference_count += rows
            self.queue_us += queue_s * 1e6
            self.compute_us += compute_s * 1e6 * requests  # Triton: per request
        self._batch_size.observe(rows)

    def request(self, ok: bool, duration_s: float) -> None:
        if ok:
            self.success += 1
        else:
            self.failure += 1
        self.request_us += duration_s * 1e6
        self._latency.observe(duration_s)


@dataclass(frozen=True)
class _Series:
    name: str
    help: str
    read: Callable[[ModelMetrics], float]


_NV_SERIES = (
    _Series("nv_inference_request_success", "Number of successful inference requests",
            lambda m: m.success),
    _Series("nv_inference_request_failure", "Number of failed inference requests",
            lambda m: m.failure),
    _Series("nv_inference_count", "Number of inferences performed (a batch of N counts N)",
            lambda m: m.inference_count),
    _Series("nv_inference_exec_count", "Number of model executions (batches)",
            lambda m: m.exec_count),
    _Series("nv_inference_request_duration_us", "Cumulative request duration, microseconds",
            lambda m: m.request_us),
    _Series("nv_inference_queue_duration_us", "Cumulative time requests waited in the queue, "
            "microseconds", lambda m: m.queue_us),
    _Series("nv_inference_compute_infer_duration_us", "Cumulative model execution time, "
            "microseconds", lambda m: m.compute_us),
)


class _Collector(Collector):
    def __init__(self, owner: ServingMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        models = list(self._owner.models.values())
        for series in _NV_SERIES:
            fam = UnknownMetricFamily(series.name, series.help, labels=("model", "version"))
            for m in models:
                fam.add_metric((m.name, m.version), series.read(m))
            yield fam
        pending = GaugeMetricFamily("nv_inference_pending_request_count",
                                    "Requests waiting in the model's queue",
                                    labels=("model", "version"))
        for m in models:
            pending.add_metric((m.name, m.version), m.pending())
        yield pending
        statuses = list(self._owner.statuses.values())
        state = GaugeMetricFamily("llmos_model_state", "1 for the state each model is in",
                                  labels=("model", "state"))
        load = GaugeMetricFamily("llmos_model_load_seconds",
                                 "Seconds the last successful load took (decrypt to warm)",
                                 labels=("model",))
        size = GaugeMetricFamily("llmos_model_plaintext_bytes",
                                 "Decrypted bytes a loaded model holds in memory",
                                 labels=("model",))
        for st in statuses:
            for s in ModelState:
                state.add_metric((st.name, s.value), 1.0 if st.state is s else 0.0)
            if st.load_time_s is not None:
                load.add_metric((st.name,), st.load_time_s)
            if st.state is ModelState.READY:
                size.add_metric((st.name,), st.size_plain)
        placement = GaugeMetricFamily("llmos_model_placement",
                                      "1 for the device each model runs (or would run) on "
                                      "and how it got there: placed, fallback, unavailable",
                                      labels=("model", "device", "placement"))
        for st in statuses:
            if st.placement:
                placement.add_metric((st.name, st.device or "none", st.placement), 1.0)
        yield state
        yield load
        yield size
        yield placement


class Gauge(Protocol):
    """One gauge value (``llmos.hw.resources.MetricSample``)."""

    @property
    def name(self) -> str: ...
    @property
    def help(self) -> str: ...
    @property
    def labels(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def value(self) -> float: ...


GaugeReader = Callable[[], Iterable[Gauge]]
FallbackReader = Callable[[], Iterable[tuple[str, int]]]  # (what fell back, how often)


class _ResourceCollector(Collector):
    """The machine's resources, read when scraped (a few /proc reads), as gauges."""

    def __init__(self, gauges: GaugeReader, fallbacks: FallbackReader) -> None:
        self._gauges = gauges
        self._fallbacks = fallbacks

    def collect(self) -> Iterator[Metric]:
        try:
            readings = list(self._gauges())
        except OSError as exc:  # /proc unreadable: the other series still go out
            log.warning("reading resource metrics failed: %s", exc)
            readings = []
        families: dict[str, GaugeMetricFamily] = {}
        for g in readings:
            fam = families.get(g.name)
            if fam is None:
                fam = families[g.name] = GaugeMetricFamily(g.name, g.help,
                                                           labels=[k for k, _ in g.labels])
            fam.add_metric([v for _, v in g.labels], g.value)
        yield from families.values()
        fallbacks = CounterMetricFamily(
            "llmos_memory_fallbacks", "Weight buffers that did not get the memory asked for "
            "(hugepages: normal pages used; mlock: not pinned; reserve: pool smaller)",
            labels=("what",))
        for what, count in self._fallbacks():
            fallbacks.add_metric((what,), count)
        yield fallbacks


class ServingMetrics:
    """Everything /metrics exposes, in a registry of its own (tests run several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.models: dict[tuple[str, str], ModelMetrics] = {}
        self.statuses: dict[str, ModelStatus] = {}
        self._latency = Histogram(
            "llmos_inference_request_duration_seconds",
            "End-to-end v2 inference request latency inside the server",
            ("model", "version"), buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._batch_size = Histogram(
            "llmos_inference_batch_size", "Rows per model execution",
            ("model", "version"), buckets=_BATCH_BUCKETS, registry=self.registry)
        self._load_failures = Counter(
            "llmos_model_load_failures", "Model loads that failed, by error type",
            ("model", "error"), registry=self.registry)
        self.registry.register(_Collector(self))

    def model(self, name: str, version: str) -> ModelMetrics:
        """The counters of a model version (kept across unload/load, as counters must be)."""
        key = (name, version)
        if key not in self.models:
            self.models[key] = ModelMetrics(name, version, self._latency, self._batch_size)
        return self.models[key]

    def model_status(self, status: ModelStatus) -> None:
        self.statuses[status.name] = status

    def forget(self, name: str) -> None:
        self.statuses.pop(name, None)

    def load_failed(self, name: str, error: str) -> None:
        self._load_failures.labels(name, error).inc()

    def watch_resources(self, gauges: GaugeReader, fallbacks: FallbackReader) -> None:
        """Export the machine's resources and the memory fallbacks (call once)."""
        self.registry.register(_ResourceCollector(gauges, fallbacks))

    def samples(self) -> Iterator[Sample]:
        """Every sample a scrape would expose, as the library collects them (no text)."""
        for family in self.registry.collect():
            yield from family.samples

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape: (body, content type) per its Accept header."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
