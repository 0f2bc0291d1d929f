"""The health gate of a newly installed version: is the supervisor READY, and does every
model answer its golden request? (``llmos health-gate``; the HTTP client is injected.)

Readiness is read from ``GET /health``: "ready" goes on; "starting", or any model still
loading, waits; the start-up failure answer of ``llmos.web.fallback`` (status
"UNAVAILABLE", no key section), a fleet key that was not released, or a start-up that is
over with models not serving fail at once, with the reasons /health gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from llmos.osupdate.golden import ChatCheck, Check, EmbeddingCheck

POLL_S = 2.0
MIN_REQUEST_TIMEOUT_S = 10.0
BUSY = frozenset({429, 503, 504})  # overloaded or past the server's deadline: ask again
BUSY_TRIES = 5


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer (refused, reset, timed out)
    doc: Any  # the JSON body, None when there is none
    error: str = ""  # why there is no answer, when there is none


class Http(Protocol):
    def get(self, path: str, timeout_s: float) -> Answer: ...

    def post(self, path: str, doc: Mapping[str, Any], timeout_s: float) -> Answer: ...


class GateFailed(Exception):
    """The new version is not fit to keep: the message says why."""


def _reasons(doc: Mapping[str, Any]) -> str:
    reasons = doc.get("reasons")
    return "; ".join(str(r) for r in reasons) if isinstance(reasons, list) and reasons \
        else "no reason given"


def readiness(answer: Answer) -> str | None:
    """None: ready. "wait: ...": not yet. Raises GateFailed when it never will be."""
    doc = answer.doc
    if answer.status == 0 or not isinstance(doc, Mapping):
        return f"wait: the API does not answer yet ({answer.error or answer.status})"
    status = doc.get("status")
    if status == "UNAVAILABLE" and "key" not in doc:
        raise GateFailed(f"the supervisor could not start: {_reasons(doc)}")
    if status == "ready" and doc.get("ready") is True:
        return None
    models = doc.get("models")
    if not isinstance(models, Mapping):
        models = {}
    loading = any(isinstance(m, Mapping) and m.get("state") == "loading"
                  for m in models.values())
    key = doc.get("key")
    if isinstance(key, Mapping) and key.get("released") is False:
        raise GateFailed(f"the fleet key was not released: {_reasons(doc)}")
    if status == "starting" or loading:
        return f"wait: {_reasons(doc)}"
    raise GateFailed(f"the supervisor is {status}: {_reasons(doc)}")


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        raise GateFailed(f"the embedding has {len(a)} values, the reference {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(math.fsum(x * x for x in a))
    nb = math.sqrt(math.fsum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def embedding_request(check: EmbeddingCheck) -> tuple[str, dict[str, Any]]:
    if check.endpoint == "openai":
        return "/v1/embeddings", {"model": check.name, "input": check.text}
    return (f"/v2/models/{check.name}/infer",
            {"inputs": [{"name": check.input, "datatype": "BYTES", "shape": [1],
                         "data": [check.text]}],
             "outputs": [{"name": check.output}]})


def _failed(what: str, answer: Answer) -> GateFailed:
    if answer.status == 0:
        return GateFailed(f"{what}: no answer ({answer.error})")
    detail = answer.doc.get("error") if isinstance(answer.doc, Mapping) else None
    if isinstance(detail, Mapping):
        detail = detail.get("message")
    return GateFailed(f"{what}: HTTP {answer.status}" + (f": {detail}" if detail else ""))


def embedding_vector(check: EmbeddingCheck, answer: Answer) -> list[float]:
    """The vector of an embedding answer (v2 or OpenAI), or GateFailed."""
    doc = answer.doc
    if answer.status != 200 or not isinstance(doc, Mapping):
        raise _failed(f"{check.name} embedding", answer)
    try:
        if check.endpoint == "openai":
            data = doc["data"][0]["embedding"]
        else:
            data = next(o["data"] for o in doc["outputs"] if o["name"] == check.output)
        return [float(x) for x in data]
    except (KeyError, IndexError, TypeError, ValueError, StopIteration) as exc:
        raise GateFailed(f"{check.name} embedding: the answer has no vector ({exc!r})") from exc


def chat_request(check: ChatCheck) -> dict[str, Any]:
    return {"model": check.name, "messages": [{"role": "user", "content": check.prompt}],
            "max_tokens": check.max_tokens, "temperature": 0.0}


def chat_answer(check: ChatCheck, answer: Answer) -> str:
    """The content of a chat answer that answers (200, content, finish reason)."""
    doc = answer.doc
    if answer.status != 200 or not isinstance(doc, Mapping):
        raise _failed(f"{check.name} chat", answer)
    try:
        choice = doc["choices"][0]
        content, finish = choice["message"]["content"], choice["finish_reason"]
    except (KeyError, IndexError, TypeError) as exc:
        raise GateFailed(f"{check.name} chat: the answer has no choice ({exc!r})") from exc
    if not isinstance(content, str) or not content.strip():
        raise GateFailed(f"{check.name} chat: the answer is empty")
    if not finish:
        raise GateFailed(f"{check.name} chat: the answer has no finish_reason")
    return content


@dataclass
class Gate:
    http: Http
    checks: Sequence[Check]
    timeout_s: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    say: Callable[[str], None]

    def __call__(self) -> int:
        """0 when the version passes, 1 when it does not (after saying why)."""
        deadline = self.clock() + self.timeout_s
        try:
            served = self._wait_ready(deadline)
            for check in self.checks:
                if check.name not in served:
                    raise GateFailed(f"{check.name} is in the golden file but not served "
                                     f"(serving: {', '.join(sorted(served)) or 'nothing'})")
                self._run(check, deadline)
        except GateFailed as exc:
            self.say(f"health-gate: FAILED: {exc}")
            return 1
        self.say("health-gate: passed")
        return 0

    def _wait_ready(self, deadline: float) -> set[str]:
        said = ""
        while True:
            answer = self.http.get("/health", MIN_REQUEST_TIMEOUT_S)
            waiting = readiness(answer)
            if waiting is None:
                models = answer.doc.get("models") or {}
                self.say(f"health-gate: supervisor ready ({len(models)} models)")
                return set(models)
            if waiting != said:
                self.say(f"health-gate: {waiting}")
                said = waiting
            if self.clock() + POLL_S > deadline:
                raise GateFailed(f"not ready within {self.timeout_s:.0f} s "
                                 f"({waiting.removeprefix('wait: ')})")
            self.sleep(POLL_S)

    def _post(self, name: str, path: str, body: Mapping[str, Any], deadline: float) -> Answer:
        """POST, asked again while the server says it is busy (429/503/504: a loaded or slow
        machine, not a broken version) and the gate's time lasts, BUSY_TRIES times at most."""
        for _ in range(BUSY_TRIES - 1):
            answer = self.http.post(path, body, self._left(deadline))
            if answer.status not in BUSY or self.clock() + POLL_S > deadline:
                return answer
            self.say(f"health-gate: {name} busy ({answer.status}), asking again")
            self.sleep(POLL_S)
        return self.http.post(path, body, self._left(deadline))

    def _left(self, deadline: float) -> float:
        return max(deadline - self.clock(), MIN_REQUEST_TIMEOUT_S)

    def _run(self, check: Check, deadline: float) -> None:
        if isinstance(check, EmbeddingCheck):
            path, body = embedding_request(check)
            vector = embedding_vector(check, self._post(check.name, path, body, deadline))
            c = cosine(vector, check.vector)
            if not c >= check.min_cosine:
                raise GateFailed(f"{check.name} embedding cosine {c:.5f} < {check.min_cosine}")
            self.say(f"health-gate: {check.name} embedding cosine {c:.5f} ok")
        else:
            content = chat_answer(check, self._post(check.name, "/v1/chat/completions",
                                                    chat_request(check), deadline))
            self.say(f"health-gate: {check.name} chat answered {content.strip()[:40]!r} ok")
