"""The health gate's decisions, with a fake API (and the real start-up failure app)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from llmos.osupdate.client import JsonClient
from llmos.osupdate.gate import BUSY_TRIES, Answer, Gate, GateFailed, cosine, readiness
from llmos.osupdate.golden import ChatCheck, EmbeddingCheck
from llmos.web.fallback import fallback_app

VECTOR = (0.6, 0.8, 0.0)
READY = {"status": "ready", "ready": True, "reasons": [], "key": {"released": True},
         "models": {"minilm": {"state": "ready"}, "smollm2": {"state": "ready"}}}
STARTING = {"status": "starting", "ready": False, "reasons": ["loading: smollm2"],
            "key": {"released": None},
            "models": {"minilm": {"state": "ready"}, "smollm2": {"state": "loading"}}}
CHECKS = (EmbeddingCheck("minilm", "a text", VECTOR), ChatCheck("smollm2", "hi?"))


def v2_answer(vector: tuple[float, ...]) -> Answer:
    return Answer(200, {"model_name": "minilm", "outputs": [
        {"name": "embedding", "datatype": "FP32", "shape": [1, 3], "data": list(vector)}]})


def chat(content: str | None = "Paris", finish: str | None = "stop") -> Answer:
    return Answer(200, {"choices": [{"index": 0, "finish_reason": finish,
                                     "message": {"role": "assistant", "content": content}}]})


class FakeApi:
    def __init__(self, health: list[Answer], posts: Mapping[str, Answer]) -> None:
        self.health, self.posts = health, posts
        self.sent: list[tuple[str, Mapping[str, Any]]] = []

    def get(self, path: str, timeout_s: float) -> Answer:
        assert path == "/health"
        return self.health.pop(0) if len(self.health) > 1 else self.health[0]

    def post(self, path: str, doc: Mapping[str, Any], timeout_s: float) -> Answer:
        self.sent.append((path, doc))
        return self.posts[path]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def gate(api: FakeApi, lines: list[str], timeout_s: float = 60.0) -> Gate:
    clock = Clock()
    return Gate(api, CHECKS, timeout_s, clock, clock.sleep, lines.append)


POSTS = {"/v2/models/minilm/infer": v2_answer((0.6, 0.8, 0.0001)),
         "/v1/chat/completions": chat()}


def test_a_version_that_answers_passes() -> None:
    lines: list[str] = []
    api = FakeApi([Answer(0, None, "Connection refused"), Answer(503, STARTING),
                   Answer(200, READY)], POSTS)
    assert gate(api, lines)() == 0
    assert lines[-1] == "health-gate: passed"
    assert any(line.startswith("health-gate: minilm embedding cosine 1.00000 ok")
               for line in lines)
    assert "health-gate: smollm2 chat answered 'Paris' ok" in lines
    infer, completion = api.sent
    assert infer[1]["inputs"][0] == {"name": "text", "datatype": "BYTES", "shape": [1],
                                     "data": ["a text"]}
    assert completion[1]["max_tokens"] == 8 and completion[1]["temperature"] == 0.0


def test_another_cpus_kernels_pass_the_gate() -> None:
    """The same int8 model on a CPU without FMA: 0.9985 in cosine at the worst seen."""
    drift = math.acos(0.9985)
    vector = (0.6 * math.cos(drift), 0.8 * math.cos(drift), math.sin(drift))
    assert cosine(vector, VECTOR) == pytest.approx(0.9985)
    lines: list[str] = []
    posts = {**POSTS, "/v2/models/minilm/infer": v2_answer(vector)}
    assert gate(FakeApi([Answer(200, READY)], posts), lines)() == 0, lines


@pytest.mark.parametrize(("posts", "why"), [
    ({**POSTS, "/v2/models/minilm/infer": v2_answer((0.8, 0.6, 0.0))}, "cosine 0.96000 < 0.995"),
    ({**POSTS, "/v2/models/minilm/infer": Answer(503, {"error": "not ready"})}, "HTTP 503"),
    ({**POSTS, "/v2/models/minilm/infer": v2_answer((1.0, 0.0))}, "has 2 values"),
    ({**POSTS, "/v1/chat/completions": chat("  ")}, "smollm2 chat: the answer is empty"),
    ({**POSTS, "/v1/chat/completions": chat(finish=None)}, "no finish_reason"),
    ({**POSTS, "/v1/chat/completions": Answer(500, {"error": {"message": "boom"}})},
     "HTTP 500: boom"),
    ({**POSTS, "/v1/chat/completions": Answer(0, None, "timed out")}, "no answer (timed out)"),
])
def test_a_wrong_answer_fails_the_gate(posts: dict[str, Answer], why: str) -> None:
    lines: list[str] = []
    assert gate(FakeApi([Answer(200, READY)], posts), lines)() == 1
    assert lines[-1].startswith("health-gate: FAILED: ") and why in lines[-1]


def test_a_model_that_is_not_served_fails() -> None:
    only = {**READY, "models": {"minilm": {"state": "ready"}}}
    lines: list[str] = []
    assert gate(FakeApi([Answer(200, only)], POSTS), lines)() == 1
    assert "smollm2 is in the golden file but not served" in lines[-1]


def test_never_ready_fails_after_the_timeout() -> None:
    lines: list[str] = []
    assert gate(FakeApi([Answer(503, STARTING)], POSTS), lines, timeout_s=30)() == 1
    assert lines[-1] == "health-gate: FAILED: not ready within 30 s (loading: smollm2)"


@pytest.mark.parametrize(("doc", "why"), [
    ({"status": "unavailable", "ready": False, "reasons": ["fleet key unavailable (tpm2): no"],
      "key": {"released": False}, "models": {}}, "the fleet key was not released"),
    ({"status": "degraded", "ready": True, "reasons": ["model smollm2 failed: bad pack"],
      "key": {"released": True}, "models": {"minilm": {"state": "ready"},
                                            "smollm2": {"state": "failed"}}},
     "the supervisor is degraded: model smollm2 failed: bad pack"),
])
def test_a_start_up_that_is_over_without_serving_fails_at_once(doc: dict[str, Any],
                                                               why: str) -> None:
    with pytest.raises(GateFailed, match=why):
        readiness(Answer(503, doc))


def test_loading_waits() -> None:
    degraded_loading = {**STARTING, "status": "degraded"}
    assert readiness(Answer(200, degraded_loading)) == "wait: loading: smollm2"
    assert readiness(Answer(200, READY)) is None


def test_cosine() -> None:
    assert cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.0)
    assert cosine([0.0, 0.0], [1.0, 0.0]) == 0.0


async def test_the_start_up_failure_app_fails_the_gate_at_once() -> None:
    """The real fallback app (``llmos serve`` whose configuration does not load), asked by
    the real client: no waiting out the timeout."""
    server = TestServer(fallback_app("configuration error: unknown setting 'x.y'"))
    await server.start_server()
    try:
        client = JsonClient(f"http://127.0.0.1:{server.port}")
        lines: list[str] = []
        g = Gate(client, CHECKS, 600.0, lambda: 0.0, lambda s: None, lines.append)
        assert await asyncio.to_thread(g) == 1
    finally:
        await server.close()
    assert lines == ["health-gate: FAILED: the supervisor could not start: configuration "
                     "error: unknown setting 'x.y'"]


class BusyThenAnswering(FakeApi):
    """The chat answers 504 (past the server's deadline: a loaded machine) ``busy`` times."""

    def __init__(self, busy: int) -> None:
        super().__init__([Answer(200, READY)], POSTS)
        self.busy = busy

    def post(self, path: str, doc: Mapping[str, Any], timeout_s: float) -> Answer:
        if path == "/v1/chat/completions" and self.busy:
            self.busy -= 1
            self.sent.append((path, doc))
            return Answer(504, {"error": {"message": "no answer within the deadline"}})
        return super().post(path, doc, timeout_s)


def test_a_busy_server_is_asked_again_not_failed() -> None:
    lines: list[str] = []
    api = BusyThenAnswering(busy=2)
    assert gate(api, lines)() == 0
    assert lines.count("health-gate: smollm2 busy (504), asking again") == 2
    assert [p for p, _ in api.sent].count("/v1/chat/completions") == 3


def test_a_server_busy_every_time_fails_after_a_few_tries() -> None:
    lines: list[str] = []
    api = BusyThenAnswering(busy=100)
    assert gate(api, lines)() == 1
    assert "HTTP 504" in lines[-1]
    assert [p for p, _ in api.sent].count("/v1/chat/completions") == BUSY_TRIES
