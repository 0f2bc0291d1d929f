"""Metrics: Triton's names, per-app registries, states and failures."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmos.serving.metrics import ServingMetrics
from llmos.state import ModelState, ModelStatus


def _samples(m: ServingMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = m.render(None)
    assert content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


MV = (("model", "m"), ("version", "1"))


def _served() -> ServingMetrics:
    """Metrics after one batch of three requests (5 rows): two succeeded, one failed."""
    m = ServingMetrics()
    mm = m.model("m", "1")
    mm.batch(requests=3, rows=5, queue_s=0.003, compute_s=0.002)
    mm.request(True, 0.004)
    mm.request(True, 0.004)
    mm.request(False, 0.001)
    return m


def test_counters_carry_tritons_names() -> None:
    s = _samples(_served())
    assert s[("nv_inference_request_success", MV)] == 2
    assert s[("nv_inference_request_failure", MV)] == 1
    assert s[("nv_inference_count", MV)] == 5
    assert s[("nv_inference_exec_count", MV)] == 1
    assert s[("nv_inference_request_duration_us", MV)] == 9000
    assert s[("nv_inference_queue_duration_us", MV)] == 3000
    assert s[("nv_inference_compute_infer_duration_us", MV)] == 6000
    assert s[("llmos_inference_request_duration_seconds_count", MV)] == 3
    assert s[("llmos_inference_batch_size_sum", MV)] == 5


def test_collected_samples_are_what_a_scrape_reads() -> None:
    """The admin charts read ``samples()``; /metrics renders the same registry as text."""
    m = _served()
    m.load_failed("m", "TamperedError")
    collected = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in m.samples()}
    assert collected == _samples(m)
    assert collected[("llmos_inference_request_duration_seconds_bucket",
                      (("le", "+Inf"), *MV))] == 3
    assert collected[("llmos_model_load_failures_total",
                      (("error", "TamperedError"), ("model", "m")))] == 1


def test_registries_are_per_instance() -> None:
    a, b = ServingMetrics(), ServingMetrics()
    a.model("m", "1").request(True, 0.001)
    assert ("nv_inference_request_success", MV) not in _samples(b)
    assert _samples(a)[("nv_inference_request_success", MV)] == 1


def test_state_gauge_load_failures_and_queue_depth() -> None:
    m = ServingMetrics()
    m.model_status(ModelStatus("m", ModelState.READY, load_time_s=1.5, size_plain=100))
    m.model_status(ModelStatus("bad", ModelState.FAILED))
    m.load_failed("bad", "TamperedError")
    m.model("m", "1").pending = lambda: 7
    s = _samples(m)
    assert s[("llmos_model_state", (("model", "m"), ("state", "READY")))] == 1
    assert s[("llmos_model_state", (("model", "m"), ("state", "FAILED")))] == 0
    assert s[("llmos_model_state", (("model", "bad"), ("state", "FAILED")))] == 1
    assert s[("llmos_model_load_failures_total",
              (("error", "TamperedError"), ("model", "bad")))] == 1
    assert s[("llmos_model_load_seconds", (("model", "m"),))] == 1.5
    assert s[("nv_inference_pending_request_count", MV)] == 7


def test_openmetrics_on_request() -> None:
    body, content_type = ServingMetrics().render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")


def test_placement_gauge_names_device_and_how_it_was_placed() -> None:
    m = ServingMetrics()
    m.model_status(ModelStatus("g", ModelState.READY, device="cuda:1", placement="placed"))
    m.model_status(ModelStatus("f", ModelState.READY, device="cpu", placement="fallback"))
    m.model_status(ModelStatus("u", ModelState.UNAVAILABLE, placement="unavailable"))
    m.model_status(ModelStatus("new", ModelState.LOADING))  # not placed yet: no series
    s = _samples(m)
    placed = {k[1]: v for k, v in s.items() if k[0] == "llmos_model_placement"}
    assert placed == {
        (("device", "cuda:1"), ("model", "g"), ("placement", "placed")): 1,
        (("device", "cpu"), ("model", "f"), ("placement", "fallback")): 1,
        (("device", "none"), ("model", "u"), ("placement", "unavailable")): 1,
    }


@dataclass(frozen=True)
class _Gauge:
    name: str
    help: str
    labels: tuple[tuple[str, str], ...]
    value: float


def test_resources_are_read_at_scrape_time_as_gauges_and_fallbacks_as_counters() -> None:
    m = ServingMetrics()
    rss = [100.0]
    fallbacks = [("hugepages", 3)]
    m.watch_resources(
        lambda: [_Gauge("llmos_process_resident_bytes", "RSS", (), rss[0]),
                 _Gauge("llmos_model_memory_bytes", "weights", (("model", "a"),), 4096),
                 _Gauge("llmos_model_memory_bytes", "weights", (("model", "b"),), 8192)],
        lambda: fallbacks)
    s = _samples(m)
    assert s[("llmos_process_resident_bytes", ())] == 100
    assert s[("llmos_model_memory_bytes", (("model", "a"),))] == 4096
    assert s[("llmos_model_memory_bytes", (("model", "b"),))] == 8192
    assert s[("llmos_memory_fallbacks_total", (("what", "hugepages"),))] == 3
    rss[0], fallbacks[:] = 250.0, [("hugepages", 4), ("mlock", 1)]
    s = _samples(m)
    assert s[("llmos_process_resident_bytes", ())] == 250
    assert s[("llmos_memory_fallbacks_total", (("what", "mlock"),))] == 1
    body, _ = m.render(None)
    assert b"# TYPE llmos_process_resident_bytes gauge" in body
    assert b"# TYPE llmos_memory_fallbacks_total counter" in body


def test_an_unreadable_proc_leaves_the_other_series(caplog: pytest.LogCaptureFixture) -> None:
    m = ServingMetrics()

    def broken() -> list[_Gauge]:
        raise FileNotFoundError("/proc/meminfo")

    m.watch_resources(broken, lambda: [("mlock", 2)])
    m.model_status(ModelStatus("m", ModelState.READY))
    s = _samples(m)
    assert s[("llmos_model_state", (("model", "m"), ("state", "READY")))] == 1
    assert s[("llmos_memory_fallbacks_total", (("what", "mlock"),))] == 2
    assert "reading resource metrics failed" in caplog.text
