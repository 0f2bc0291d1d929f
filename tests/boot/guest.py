"""Talking to the booted appliance over its forwarded ports (through llmos_vm.http)."""

from __future__ import annotations

from typing import Any

import numpy as np
from llmos_vm import http, report
from llmos_vm.machine import Boot
from prometheus_client.parser import text_string_to_metric_families

# Under TCG on two shared cores the first boot (enrollment, decrypting and warming the
# packs, the LLM included) takes a few minutes; the limits leave room for a slow CI host.
SETTLE_TIMEOUT_S = 20 * 60.0
REQUEST_TIMEOUT_S = 300.0


def settled_health(boot: Boot, api: str) -> dict[str, Any]:
    """/health once start-up is over (status no longer 'starting'), as JSON."""

    def probe() -> dict[str, Any] | None:
        reply = http.request(f"{api}/health", timeout_s=10)
        if reply is None or reply.status not in (200, 503):
            return None
        doc: dict[str, Any] = reply.json()
        return None if doc.get("status") == "starting" else doc

    return boot.wait_until(probe, timeout_s=SETTLE_TIMEOUT_S, interval_s=2.0,
                           what="settled /health (status other than 'starting')")


def embeddings(api: str, model: str, texts: list[str]) -> np.ndarray:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                        "data": texts}]}
    reply = http.request(f"{api}/v2/models/{model}/infer", body, timeout_s=REQUEST_TIMEOUT_S)
    assert reply is not None, "no answer from the v2 infer endpoint"
    assert reply.status == 200, reply.body[:500]
    out = reply.json()["outputs"][0]
    assert out["name"] == "embedding" and out["datatype"] == "FP32", out
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def chat(api: str, model: str, question: str, max_tokens: int) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": 0, "seed": 1}
    reply = http.request(f"{api}/v1/chat/completions", body, timeout_s=REQUEST_TIMEOUT_S)
    assert reply is not None, "no answer from /v1/chat/completions"
    assert reply.status == 200, reply.body[:500]
    doc: dict[str, Any] = reply.json()
    return doc


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics(api: str) -> Samples:
    """The guest's /metrics, by (name, sorted labels)."""
    reply = http.request(f"{api}/metrics", timeout_s=REQUEST_TIMEOUT_S)
    assert reply is not None and reply.status == 200, "no answer from /metrics"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(reply.body.decode())
            for s in fam.samples}


def boot_report(boot: Boot) -> dict[str, str]:
    """The fields of the guest's boot report (llmos-boot-report.service), once complete."""
    return boot.wait_until(lambda: report.fields(boot.console()), timeout_s=SETTLE_TIMEOUT_S,
                           interval_s=0.5, what="the guest's boot report")
