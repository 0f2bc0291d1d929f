"""The real server on real sealed ONNX packs: every v2 endpoint, errors, limits, metrics."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from .conftest import MAX_BODY, Client, Packs, Start, standard_config, wait_settled


def _x(rows: int, cols: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


def _infer_body(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                        "data": x.ravel().tolist()}], **extra}


async def _metrics(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = await (await client.get("/metrics")).text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def _started(start_app: Start, packs: Packs, tmp_path: Path,
                   **env: str) -> Client:
    client: Client
    client, _ = await start_app(standard_config(packs, tmp_path), environ=env)
    await wait_settled(client)
    return client


async def test_health_and_server_metadata(start_app: Start, packs: Packs,
                                          tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    assert (await client.get("/v2/health/live")).status == 200
    ready = await client.get("/v2/health/ready")
    assert ready.status == 200 and (await ready.json())["ready"] is True
    live = await client.get("/health/live")  # the load balancer's pair, beside v2's
    assert live.status == 200 and (await live.json()) == {"live": True}
    ready = await client.get("/health/ready")
    assert ready.status == 200 and (await ready.json())["ready"] is True
    meta = await (await client.get("/v2")).json()
    assert meta["name"] == "llmos" and "model_repository" in meta["extensions"]
    health = await client.get("/health")
    doc = await health.json()
    assert health.status == 200 and doc["status"] == "degraded"
    states = {n: m["state"] for n, m in doc["models"].items()}
    assert states == {"alpha": "READY", "slow": "READY", "deadline": "READY",
                      "broken": "FAILED", "wrongkey": "FAILED"}
    assert doc["models"]["alpha"]["load_time_s"] > 0
    assert doc["models"]["alpha"]["size_plain"] > 0


async def test_failed_packs_are_reported_and_the_rest_serve(start_app: Start, packs: Packs,
                                                            tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    doc = await (await client.get("/health")).json()
    broken, wrong = doc["models"]["broken"], doc["models"]["wrongkey"]
    assert broken["error_type"] == "TamperedError" and "does not authenticate" in broken["reason"]
    assert wrong["error_type"] == "WrongKeyError" and "sealed for fleet key" in wrong["reason"]
    assert any("model broken failed" in r for r in doc["reasons"])
    r = await client.get("/v2/models/broken/ready")
    assert r.status == 400 and (await r.json())["state"] == "FAILED"
    r = await client.post("/v2/models/broken/infer", json=_infer_body(_x(1)))
    assert r.status == 503 and "FAILED" in (await r.json())["error"]
    meta = await (await client.get("/v2/models/broken")).json()  # the clear manifest
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    m = await _metrics(client)
    assert m[("llmos_model_load_failures_total",
              (("error", "TamperedError"), ("model", "broken")))] == 1
    assert m[("llmos_model_state", (("model", "wrongkey"), ("state", "FAILED")))] == 1
    r = await client.post("/v2/models/alpha/infer", json=_infer_body(_x(1)))
    assert r.status == 200


async def test_model_metadata_and_readiness(start_app: Start, packs: Packs,
                                            tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    for url in ("/v2/models/alpha", "/v2/models/alpha/versions/1"):
        r = await client.get(url)
        assert r.status == 200
        assert await r.json() == {
            "name": "alpha", "versions": ["1"], "platform": "onnxruntime_onnx",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]},
                        {"name": "s", "datatype": "FP32", "shape": [-1]}]}
    for url in ("/v2/models/alpha/ready", "/v2/models/alpha/versions/1/ready"):
        r = await client.get(url)
        assert r.status == 200 and (await r.json())["ready"] is True
    for url in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/alpha/versions/2",
                "/v2/models/alpha/versions/2/ready"):
        r = await client.get(url)
        doc = await r.json()
        assert r.status == 404 and doc["type"] == "NotFoundError", url
        assert doc["hint"]


async def test_infer_computes_the_model(start_app: Start, packs: Packs, tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    x = _x(3)
    r = await client.post("/v2/models/alpha/infer", json=_infer_body(x, id="req-7"))
    assert r.status == 200
    doc = await r.json()
    assert doc["model_name"] == "alpha" and doc["model_version"] == "1" and doc["id"] == "req-7"
    out = {o["name"]: o for o in doc["outputs"]}
    assert out["y"]["datatype"] == "FP32" and out["y"]["shape"] == [3, 3]
    np.testing.assert_allclose(np.array(out["y"]["data"]).reshape(3, 3), x @ packs.w + packs.b,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["s"]["data"], x.sum(axis=1), rtol=1e-5, atol=1e-5)
    # nested data, the versioned URL, and only the output asked for
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4],
                        "data": x.tolist()}], "outputs": [{"name": "s"}]}
    doc = await (await client.post("/v2/models/alpha/versions/1/infer", json=body)).json()
    assert [o["name"] for o in doc["outputs"]] == ["s"] and "id" not in doc


async def test_concurrent_requests_batch_and_each_gets_its_own_answer(
        start_app: Start, packs: Packs, tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    xs = [_x(1 + i % 3, seed=i) for i in range(48)]
    resps = await asyncio.gather(*(client.post("/v2/models/alpha/infer", json=_infer_body(x))
                                   for x in xs))
    for x, r in zip(xs, resps, strict=True):
        assert r.status == 200
        y = next(o for o in (await r.json())["outputs"] if o["name"] == "y")
        np.testing.assert_allclose(np.array(y["data"]).reshape(-1, 3), x @ packs.w + packs.b,
                                   rtol=1e-5, atol=1e-5)
    m = await _metrics(client)
    mv = (("model", "alpha"), ("version", "1"))
    assert m[("nv_inference_request_success", mv)] == 48
    assert m[("nv_inference_count", mv)] == sum(x.shape[0] for x in xs)
    execs = m[("nv_inference_exec_count", mv)]
    assert 1 <= execs <= 48
    assert m[("nv_inference_request_duration_us", mv)] > 0
    assert m[("nv_inference_compute_infer_duration_us", mv)] > 0


async def test_client_errors_name_the_problem(start_app: Start, packs: Packs,
                                              tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    url = "/v2/models/alpha/infer"
    cases: list[tuple[Any, int, str]] = [
        (b"{not json", 400, "not valid JSON"),
        ({"inputs": [{"name": "x", "datatype": "INT64", "shape": [1, 4], "data": [1, 2, 3, 4]}]},
         400, "datatype INT64 given, model 'alpha' expects FP32"),
        (_infer_body(_x(1, cols=5)), 400, "does not match the model's [-1, 4]"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [1.0]}]},
         400, "needs 8 values"),
        ({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
         400, "needs input(s) x"),
        (_infer_body(_x(1), outputs=[{"name": "nope"}]), 400, "no output(s) nope"),
    ]
    for body, status, fragment in cases:
        r = await (client.post(url, data=body) if isinstance(body, bytes)
                   else client.post(url, json=body))
        doc = await r.json()
        assert r.status == status, (body, doc)
        assert fragment in doc["error"], doc
        assert doc["type"] == "BadRequestError" and doc["hint"]
        assert "Traceback" not in await r.text()
    r = await client.post("/v2/models/nope/infer", json=_infer_body(_x(1)))
    assert r.status == 404 and "unknown model 'nope'" in (await r.json())["error"]
    r = await client.post("/v2/models/alpha/versions/9/infer", json=_infer_body(_x(1)))
    assert r.status == 404 and "no version '9'" in (await r.json())["error"]
    r = await client.get(url)
    assert r.status == 405 and (await r.json())["error"]
    r = await client.get("/nowhere")
    assert r.status == 404 and (await r.json())["hint"]
    m = await _metrics(client)
    # failures of requests that reached the model (not the unknown model or version)
    assert m[("nv_inference_request_failure", (("model", "alpha"), ("version", "1")))] == \
        len(cases)


async def test_body_over_the_limit_is_413(start_app: Start, packs: Packs, tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    big = b'{"inputs": [' + b" " * (MAX_BODY + 1024) + b"]}"
    r = await client.post("/v2/models/alpha/infer", data=big,
                          headers={"Content-Type": "application/json"})
    doc = await r.json()
    assert r.status == 413 and doc["type"] == "PayloadTooLargeError"
    assert str(MAX_BODY) in doc["error"] and "max_body_bytes" in doc["hint"]


async def test_full_queue_is_503_with_retry_after(start_app: Start, packs: Packs,
                                                 tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    # ~10 ms of compute each; one runs, two wait, the rest are refused
    body = json.dumps(_infer_body(_x(16, cols=512))).encode()
    headers = {"Content-Type": "application/json"}
    resps = await asyncio.gather(*(client.post("/v2/models/slow/infer", data=body,
                                               headers=headers) for _ in range(30)))
    statuses = [r.status for r in resps]
    assert statuses.count(200) >= 3 and statuses.count(503) >= 1, statuses
    assert set(statuses) == {200, 503}, statuses
    refused = next(r for r in resps if r.status == 503)
    assert refused.headers["Retry-After"] == "1"
    doc = await refused.json()
    assert doc["type"] == "QueueFullError" and "queue is full" in doc["error"]


async def test_deadline_is_504(start_app: Start, packs: Packs, tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    r = await client.post("/v2/models/deadline/infer", json=_infer_body(_x(16, cols=512)))
    doc = await r.json()
    assert r.status == 504 and doc["type"] == "InferenceTimeoutError", doc
    # the model still serves afterwards
    r = await client.post("/v2/models/slow/infer", json=_infer_body(_x(1, cols=512)))
    assert r.status == 200


async def test_repository_index_unload_and_load(start_app: Start, packs: Packs,
                                                tmp_path: Path) -> None:
    client = await _started(start_app, packs, tmp_path)
    index = await (await client.post("/v2/repository/index")).json()
    assert {row["name"]: row["state"] for row in index}["broken"] == "FAILED"
    ready_only = await (await client.post("/v2/repository/index", json={"ready": True})).json()
    assert sorted(row["name"] for row in ready_only) == ["alpha", "deadline", "slow"]
    r = await client.post("/v2/repository/models/alpha/unload")
    assert r.status == 200 and (await r.json())["state"] == "UNLOADED"
    assert (await client.get("/v2/models/alpha/ready")).status == 400
    r = await client.post("/v2/models/alpha/infer", json=_infer_body(_x(1)))
    assert r.status == 503 and "UNLOADED" in (await r.json())["error"]
    r = await client.post("/v2/repository/models/alpha/load")
    assert r.status == 200 and (await r.json())["state"] == "READY"
    r = await client.post("/v2/models/alpha/infer", json=_infer_body(_x(1)))
    assert r.status == 200
    r = await client.post("/v2/repository/models/broken/load")
    doc = await r.json()
    assert r.status == 422 and doc["type"] == "TamperedError"
    r = await client.post("/v2/repository/models/nope/load")
    assert r.status == 404


async def test_load_and_unload_over_the_api_are_off_by_default(
        start_app: Start, packs: Packs, tmp_path: Path) -> None:
    client, _ = await start_app(standard_config(packs, tmp_path, control=False))
    await wait_settled(client)
    for action in ("unload", "load"):
        r = await client.post(f"/v2/repository/models/alpha/{action}")
        doc = await r.json()
        assert r.status == 403 and doc["type"] == "ForbiddenError", doc
        assert "turned off" in doc["error"] and "admin page" in doc["hint"], doc
    assert (await client.get("/v2/models/alpha/ready")).status == 200  # nothing changed
    assert (await client.post("/v2/repository/index")).status == 200  # reading is allowed


async def test_no_key_keeps_serving_health(start_app: Start, packs: Packs,
                                           tmp_path: Path) -> None:
    path = standard_config(packs, tmp_path, keyfile=str(tmp_path / "missing.key"))
    client, sup = await start_app(path)
    doc = await wait_settled(client)
    since = {name: m["since"] for name, m in doc["models"].items()}
    for _ in range(500):  # until the start-up pass (placing every model) is over
        if sup.health().settled:
            break
        await asyncio.sleep(0.01)
    assert sup.health().settled, "start-up did not finish in 5 s"
    r = await client.get("/health")
    assert r.status == 503 and doc["status"] == "unavailable"
    # Placing the models after the key failed (as start-up does, maybe after a client
    # looked) changes nothing a client sees: state and 'since' stand (a moving stamp
    # would read as a restart).
    await sup.registry.place(sup.registry.reconciler.plan.by_model()["alpha"])
    r = await client.get("/health")
    assert {name: m["since"] for name, m in (await r.json())["models"].items()} == since
    assert doc["key"]["released"] is False
    assert any("fleet key unavailable" in reason and "missing.key" in reason
               for reason in doc["reasons"])
    assert doc["models"]["alpha"]["state"] == "UNAVAILABLE"
    assert (await client.get("/v2/health/ready")).status == 400
    assert (await client.get("/v2/health/live")).status == 200
    ready = await client.get("/health/ready")
    doc = await ready.json()
    assert ready.status == 503 and doc["ready"] is False and doc["status"] == "unavailable"
    assert any("fleet key unavailable" in reason for reason in doc["reasons"])
    assert not any(str(tmp_path) in reason for reason in doc["reasons"])  # no paths
    assert (await client.get("/health/live")).status == 200
    r = await client.post("/v2/models/alpha/infer", json=_infer_body(_x(1)))
    assert r.status == 503 and "UNAVAILABLE" in (await r.json())["error"]


async def test_sd_notify_ready_only_after_loading_and_watchdog(
        start_app: Start, packs: Packs, tmp_path: Path,
        notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    _, sup = await start_app(standard_config(packs, tmp_path),
                             environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    messages: list[dict[str, str]] = []
    while not any("READY" in m for m in messages):
        messages.append(await asyncio.to_thread(_recv, sock))
    ready = next(m for m in messages if "READY" in m)
    # READY=1 came after every model was loaded or had failed for good
    assert ready["STATUS"].startswith("degraded: 3/5 models serving")
    assert "broken" in ready["STATUS"]
    assert all(s.state.value in ("READY", "FAILED") for s in sup.registry.statuses())
    loading = [m for m in messages if m.get("STATUS", "").startswith("loading model")]
    assert loading and all(int(m["EXTEND_TIMEOUT_USEC"]) > 0 for m in loading)
    while {"WATCHDOG": "1"} not in messages[-1:]:  # pings every 50 ms
        messages.append(await asyncio.to_thread(_recv, sock))


def _recv(sock: socket.socket) -> dict[str, str]:
    raw = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in raw.splitlines())
