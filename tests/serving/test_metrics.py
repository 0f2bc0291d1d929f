"""Metrics: Triton's names, per-app registries, states and failures."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from llmos.serving.metrics import ServingMetrics
from llmos.state import ModelState, ModelStatus


def _samples(m: ServingMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = m.render(None)
    assert content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


MV = (("model", "m"), ("version", "1"))


def test_counters_carry_tritons_names() -> None:
    m = ServingMetrics()
    mm = m.model("m", "1")
    mm.batch(requests=3, rows=5, queue_s=0.003, compute_s=0.002)
    mm.request(True, 0.004)
    mm.request(True, 0.004)
    mm.request(False, 0.001)
    s = _samples(m)
    assert s[("nv_inference_request_success", MV)] == 2
    assert s[("nv_inference_request_failure", MV)] == 1
    assert s[("nv_inference_count", MV)] == 5
    assert s[("nv_inference_exec_count", MV)] == 1
    assert s[("nv_inference_request_duration_us", MV)] == 9000
    assert s[("nv_inference_queue_duration_us", MV)] == 3000
    assert s[("nv_inference_compute_infer_duration_us", MV)] == 6000
    assert s[("llmos_inference_request_duration_seconds_count", MV)] == 3
    assert s[("llmos_inference_batch_size_sum", MV)] == 5


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
