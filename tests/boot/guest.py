"""Talking to the booted appliance over its forwarded ports (through llmos_vm.http)."""

from __future__ import annotations

from typing import Any

import numpy as np
import openai
import tritonclient.http as triton
from llmos_vm import http, report
from llmos_vm.machine import Boot
from prometheus_client.parser import text_string_to_metric_families

# Under TCG on two shared cores the first boot (enrollment, decrypting and warming the
# packs, the LLM included) takes a few minutes; the limits leave room for a slow CI host.
SETTLE_TIMEOUT_S = 20 * 60.0
REQUEST_TIMEOUT_S = 300.0


def settled_health(boot: Boot, api: str, pin: str | None = None) -> dict[str, Any]:
    """/health once start-up is over (status no longer 'starting'), as JSON. ``pin``: the
    certificate's fingerprint, for an API that speaks HTTPS."""

    def probe() -> dict[str, Any] | None:
        reply = http.request(f"{api}/health", timeout_s=10, pin=pin)
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


def triton_embeddings(api: str, model: str, texts: list[str]) -> np.ndarray:
    """The embeddings through the stock ``tritonclient.http`` with its defaults (the binary
    tensor extension both ways); a client error fails as an AssertionError."""
    client = triton.InferenceServerClient(url=api.removeprefix("http://"),
                                          network_timeout=REQUEST_TIMEOUT_S)
    text = triton.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
    try:
        out: np.ndarray = client.infer(model, [text]).as_numpy("embedding")
    except Exception as exc:  # the client's errors, kept as a failed request
        raise AssertionError(f"tritonclient infer on {model}: {exc!r}") from exc
    finally:
        client.close()
    return out


def _openai(api: str, verify: str | bool = True) -> openai.OpenAI:
    """The stock client; ``verify``: for an ``https://`` API, the certificate to trust."""
    return openai.OpenAI(base_url=f"{api}/v1", api_key="none", timeout=REQUEST_TIMEOUT_S,
                         max_retries=0, http_client=openai.DefaultHttpxClient(verify=verify))


def openai_embeddings(api: str, model: str, texts: list[str],
                      verify: str | bool = True) -> np.ndarray:
    """The embeddings through the stock ``openai`` client's /v1/embeddings (``verify``: see
    ``_openai``)."""
    try:
        reply = _openai(api, verify).embeddings.create(model=model, input=texts)
    except openai.OpenAIError as exc:
        raise AssertionError(f"openai embeddings on {model}: {exc!r}") from exc
    return np.array([d.embedding for d in reply.data], dtype=np.float32)


def openai_chat(api: str, model: str, question: str, max_tokens: int) -> dict[str, Any]:
    """One greedy chat completion through the stock ``openai`` client, as its JSON."""
    try:
        reply = _openai(api).chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}],
            max_tokens=max_tokens, temperature=0, seed=1)
    except openai.OpenAIError as exc:
        raise AssertionError(f"openai chat on {model}: {exc!r}") from exc
    return reply.model_dump()


def answered_chat(api: str, model: str, question: str, max_tokens: int,
                  tries: int = 3) -> dict[str, Any]:
    """``openai_chat``, where a 504 (past the server's deadline: the emulated guest on a
    loaded host, a first chat's whole prefill under TCG) is asked again, as the health gate
    does; any other failure fails at once."""
    for _ in range(tries - 1):
        try:
            return openai_chat(api, model, question, max_tokens)
        except AssertionError as exc:
            if "504" not in str(exc):
                raise
    return openai_chat(api, model, question, max_tokens)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics(api: str) -> Samples:
    """The guest's /metrics, by (name, sorted labels)."""
    reply = http.request(f"{api}/metrics", timeout_s=REQUEST_TIMEOUT_S)
    assert reply is not None and reply.status == 200, "no answer from /metrics"
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(reply.body.decode())
            for s in fam.samples}


def admin_fingerprint(boot: Boot) -> str:
    """The fingerprint the supervisor printed on the console in this boot (the last one)."""
    boot.wait_console(report.certificate_line("admin").pattern, timeout_s=SETTLE_TIMEOUT_S)
    return report.certificates(boot.console())[-1][1]


def boot_report(boot: Boot) -> dict[str, str]:
    """The fields of the guest's boot report (llmos-boot-report.service), once complete."""
    return boot.wait_until(lambda: report.fields(boot.console()), timeout_s=SETTLE_TIMEOUT_S,
                           interval_s=0.5, what="the guest's boot report")
