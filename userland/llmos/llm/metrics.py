"""vLLM-style metrics of the generation engines, on the server's Prometheus registry.

The names are vLLM's, labelled ``model_name`` as vLLM does, so its dashboards work here:

    vllm:num_requests_running, vllm:num_requests_waiting            (gauges)
    vllm:time_to_first_token_seconds, vllm:inter_token_latency_seconds,
    vllm:e2e_request_latency_seconds                                 (histograms)
    vllm:prompt_tokens_total, vllm:generation_tokens_total,
    vllm:request_success_total{finished_reason}                      (counters)

and the prefix cache's (vLLM counts tokens queried and hit; bytes held are ours):

    vllm:prefix_cache_queries_total, vllm:prefix_cache_hits_total     (tokens)
    llmos:prefix_cache_lookups_total{result="hit"|"miss"}             (requests)
    llmos:prefix_cache_bytes                                          (gauge)
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from llmos.llm.stopping import FinishReason

_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0)
_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0)
_E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
LABEL = ("model_name",)


class LLMMetrics:
    """The metric families (one set per registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.running = Gauge("vllm:num_requests_running",
                             "Number of requests in model execution batches", LABEL, registry=r)
        self.waiting = Gauge("vllm:num_requests_waiting",
                             "Number of requests waiting to be processed", LABEL, registry=r)
        self.ttft = Histogram("vllm:time_to_first_token_seconds",
                              "Histogram of time to first token in seconds", LABEL,
                              buckets=_TTFT_BUCKETS, registry=r)
        self.itl = Histogram("vllm:inter_token_latency_seconds",
                             "Histogram of inter-token latency in seconds", LABEL,
                             buckets=_ITL_BUCKETS, registry=r)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds",
                             "Histogram of end to end request latency in seconds", LABEL,
                             buckets=_E2E_BUCKETS, registry=r)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed",
                                     LABEL, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens",
                                         "Number of generation tokens processed", LABEL,
                                         registry=r)
        self.success = Counter("vllm:request_success", "Count of successfully processed requests",
                               (*LABEL, "finished_reason"), registry=r)
        self.prefix_queries = Counter("vllm:prefix_cache_queries",
                                      "Prompt tokens looked up in the prefix cache", LABEL,
                                      registry=r)
        self.prefix_hits = Counter("vllm:prefix_cache_hits",
                                   "Prompt tokens found in the prefix cache (not recomputed)",
                                   LABEL, registry=r)
        self.prefix_lookups = Counter("llmos:prefix_cache_lookups",
                                      "Prompts looked up in the prefix cache, by result",
                                      (*LABEL, "result"), registry=r)
        self.prefix_bytes = Gauge("llmos:prefix_cache_bytes",
                                  "Bytes of KV blocks the prefix cache holds", LABEL, registry=r)

    def observer(self, model_name: str) -> ModelObserver:
        return ModelObserver(self, model_name)


class ModelObserver:
    """One model's view of the metrics: the engine's ``EngineObserver``."""

    def __init__(self, metrics: LLMMetrics, model_name: str) -> None:
        self._running = metrics.running.labels(model_name)
        self._waiting = metrics.waiting.labels(model_name)
        self._ttft = metrics.ttft.labels(model_name)
        self._itl = metrics.itl.labels(model_name)
        self._e2e = metrics.e2e.labels(model_name)
        self._prompt = metrics.prompt_tokens.labels(model_name)
        self._generated = metrics.generation_tokens.labels(model_name)
        self._success = metrics.success
        self._name = model_name
        self._prefix_queries = metrics.prefix_queries.labels(model_name)
        self._prefix_hits = metrics.prefix_hits.labels(model_name)
        self._prefix_hit = metrics.prefix_lookups.labels(model_name, "hit")
        self._prefix_miss = metrics.prefix_lookups.labels(model_name, "miss")
        self._prefix_bytes = metrics.prefix_bytes.labels(model_name)

    def scheduled(self, running: int, waiting: int) -> None:
        self._running.set(running)
        self._waiting.set(waiting)

    def first_token(self, seconds: float) -> None:
        self._ttft.observe(seconds)

    def next_token(self, seconds: float) -> None:
        self._itl.observe(seconds)

    def finished(self, seconds: float, prompt_tokens: int, generated_tokens: int,
                 reason: FinishReason) -> None:
        self._prompt.inc(prompt_tokens)
        self._generated.inc(generated_tokens)
        if reason != "cancelled":
            self._e2e.observe(seconds)
            self._success.labels(self._name, reason).inc()

    def prefix_reuse(self, prompt_tokens: int, reused_tokens: int, cached_bytes: int) -> None:
        self._prefix_queries.inc(prompt_tokens)
        self._prefix_hits.inc(reused_tokens)
        (self._prefix_hit if reused_tokens else self._prefix_miss).inc()
        self._prefix_bytes.set(cached_bytes)


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, LLMMetrics] = \
    weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry) -> LLMMetrics:
    """The LLM metric families of ``registry``, created on first use."""
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = LLMMetrics(registry)
    return found
