"""API keys on the inference API (issue 24.5): 401 without a valid key, probes stay open,
per-key counters in /metrics, the stock openai client with its api_key, and a good request
served while bad ones are refused."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from llmos import apikeys

from .conftest import Packs, Start, standard_config, wait_settled

KEY = "batch-key-7c1e0f0a9d2b4e6f8a1c"
LB_KEY = "haproxy-key-0d9a8b7c6e5f4a3b2c"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def keyed(start_app: Start, packs: Packs, tmp_path: Path) -> TestClient:
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"batch: {KEY}\n"
                         f"{apikeys.key_line('lb', LB_KEY, hashed=True)}\n")
    path = standard_config(packs, tmp_path)
    path.write_text(path.read_text().replace(
        "[server]\n", f'[server]\napi_keys_file = "{keys_file}"\n'))
    client, _ = await start_app(path)
    await wait_settled(client)
    return client


async def _refusal(resp: Any) -> dict[str, Any]:
    assert resp.status == 401, await resp.text()
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    doc: dict[str, Any] = await resp.json()
    assert doc["error"]["code"] == "invalid_api_key"
    assert doc["error"]["type"] == "invalid_request_error"
    return doc


async def test_keys_guard_v1_v2_and_metrics_but_not_probes(keyed: TestClient) -> None:
    for path in ("/v2/models/alpha/infer",):
        await _refusal(await keyed.post(path, json=BODY))
        await _refusal(await keyed.post(path, json=BODY, headers=_auth(KEY + "x")))
        await _refusal(await keyed.post(path, json=BODY, headers={"Authorization": KEY}))
        ok = await keyed.post(path, json=BODY, headers=_auth(KEY))
        assert ok.status == 200, await ok.text()
        ok = await keyed.post(path, json=BODY, headers={"authorization": f"bearer {LB_KEY}"})
        assert ok.status == 200, await ok.text()
    for path in ("/v2", "/v2/models/alpha", "/v1/models", "/metrics"):
        await _refusal(await keyed.get(path))
        assert (await keyed.get(path, headers=_auth(KEY))).status == 200
    for path in ("/v2/health/live", "/v2/health/ready", "/health", "/health/live",
                 "/health/ready"):
        assert (await keyed.get(path)).status == 200, path

    text = await (await keyed.get("/metrics", headers=_auth(LB_KEY))).text()
    counts = dict(re.findall(r'^llmos_api_key_requests_total\{key="(\w+)"\} (\S+)$', text, re.M))
    assert float(counts["batch"]) == 5.0  # 1 infer + 4 GETs (this scrape is lb's)
    assert float(counts["lb"]) == 2.0
    rejected = dict(re.findall(r'^llmos_api_key_rejections_total\{reason="(\w+)"\} (\S+)$',
                               text, re.M))
    assert float(rejected["missing"]) == 6.0 and float(rejected["invalid"]) == 1.0
    assert KEY not in text and LB_KEY not in text


async def test_good_request_served_among_refused_ones(keyed: TestClient) -> None:
    bad = [keyed.post("/v2/models/alpha/infer", json=BODY, headers=_auth(f"wrong-{i:020d}"))
           for i in range(20)]
    good = [keyed.post("/v2/models/alpha/infer", json=BODY, headers=_auth(KEY))
            for _ in range(3)]
    resps = await asyncio.gather(*bad, *good)
    assert [r.status for r in resps] == [401] * 20 + [200] * 3


async def test_stock_openai_client_with_and_without_key(keyed: TestClient) -> None:
    base = str(keyed.make_url("/v1"))
    good = openai.AsyncOpenAI(base_url=base, api_key=KEY, max_retries=0)
    models = await good.models.list()
    assert isinstance(models.data, list)  # answered (tensor models are not listed in /v1)
    bad = openai.AsyncOpenAI(base_url=base, api_key="not-the-key-00000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        await bad.models.list()
    assert exc.value.code == "invalid_api_key"


async def test_without_keys_the_api_stays_open(start_app: Start, packs: Packs,
                                               tmp_path: Path) -> None:
    client, _ = await start_app(standard_config(packs, tmp_path))
    await wait_settled(client)
    assert (await client.post("/v2/models/alpha/infer", json=BODY)).status == 200
    assert "llmos_api_key_requests_total" not in await (await client.get("/metrics")).text()


async def test_the_openapi_document_says_which_operations_need_a_key(keyed: TestClient) -> None:
    """With keys on, /openapi.json (itself behind a key) declares the bearer scheme on every
    operation but the probes, and its 401 schema fits the 401s actually sent."""
    import jsonschema_rs  # schemathesis's validator (the test extra)

    await _refusal(await keyed.get("/openapi.json"))
    doc = await (await keyed.get("/openapi.json", headers=_auth(KEY))).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    infer = doc["paths"]["/v2/models/{model}/infer"]["post"]
    assert infer["security"] == [{"bearer": []}]
    schema = infer["responses"]["401"]["content"]["application/json"]["schema"]
    refusal = await _refusal(await keyed.post("/v2/models/alpha/infer", json=BODY))
    assert jsonschema_rs.is_valid(schema, refusal)
    for probe in ("/health", "/health/live", "/health/ready", "/v2/health/live",
                  "/v2/health/ready"):
        assert "security" not in doc["paths"][probe]["get"], probe
        assert "401" not in doc["paths"][probe]["get"]["responses"], probe
    secured = {f"{m} {p}" for p, ops in doc["paths"].items() for m, op in ops.items()
               if "security" in op}
    assert "post /v1/chat/completions" in secured and "get /metrics" in secured
