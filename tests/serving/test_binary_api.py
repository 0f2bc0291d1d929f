"""The binary tensor data extension on the real v2 app (real sealed ONNX packs): bodies built
and parsed by the stock tritonclient, errors as 4xx JSON, compressed request bodies."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from llmos.vault.keyfile import read_keyfile

from . import models
from .conftest import MAX_BODY, Client, Packs, Start, wait_settled, write_config

TC = httpclient.InferenceServerClient
HEADER = "Inference-Header-Content-Length"


def triton_request(arrays: dict[str, np.ndarray], binary: bool = True,
                   outputs: list[httpclient.InferRequestedOutput] | None = None
                   ) -> tuple[bytes, dict[str, str]]:
    inputs = []
    for dt, arr in arrays.items():
        i = httpclient.InferInput(f"in_{dt}", list(arr.shape), dt)
        i.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(i)
    body, size = TC.generate_request_body(inputs, outputs=outputs)
    return bytes(body), {} if size is None else {HEADER: str(size)}


async def post(client: Client, body: bytes, headers: dict[str, str],
               model: str = "echo") -> tuple[int, Any, dict[str, str]]:
    r = await client.post(f"/v2/models/{model}/infer", data=body, headers=headers)
    raw = await r.read()
    if r.status != 200:
        return r.status, json.loads(raw), dict(r.headers)
    length = r.headers.get(HEADER)
    result = TC.parse_response_body(raw, header_length=None if length is None else int(length))
    return r.status, result, dict(r.headers)


@pytest.fixture
async def echo(start_app: Start, packs: Packs, tmp_path: Path) -> Client:
    kek = read_keyfile(packs.keyfile)
    own = tmp_path / "own"
    own.mkdir()
    models.write(own / "echo.llmos", models.sealed_pack(models.echo(), "echo", kek))
    for name in ("alpha", "slow"):
        models.write(own / f"{name}.llmos", (packs.dir / f"{name}.llmos").read_bytes())
    cfg = write_config(
        tmp_path / "llmos.toml",
        {"server": {"host": "127.0.0.1", "port": 0, "admin_port": 0,
                    "max_body_bytes": MAX_BODY, "state_dir": str(tmp_path / "state"),
                    "packs_dir": str(own)},
         "keys": {"provider": "keyfile", "keyfile": str(packs.keyfile), "allow_dev_key": True}},
        [{"name": "echo", "pack": "echo.llmos", "max_queue_delay_ms": 1.0},
         {"name": "alpha", "pack": "alpha.llmos", "max_queue_delay_ms": 1.0},
         {"name": "slow", "pack": "slow.llmos", "max_batch_size": 1}])
    client: Client
    client, _ = await start_app(cfg)
    doc = await wait_settled(client)
    assert doc["status"] == "ready", doc
    return client


async def test_server_metadata_names_the_extension(echo: Client) -> None:
    meta = await (await echo.get("/v2")).json()
    assert "binary_tensor_data" in meta["extensions"]


async def test_every_datatype_round_trips_binary_and_json_alike(echo: Client) -> None:
    arrays = models.echo_inputs()
    status, by_raw, headers = await post(echo, *triton_request(arrays))
    assert status == 200, by_raw
    assert headers["Content-Type"] == "application/octet-stream" and HEADER in headers
    status, by_json, headers = await post(echo, *triton_request(arrays, binary=False))
    assert status == 200 and HEADER in headers  # tritonclient still asks binary outputs
    for dt, arr in arrays.items():
        got_raw = by_raw.as_numpy(f"out_{dt}")
        got_json = by_json.as_numpy(f"out_{dt}")
        assert got_raw.shape == arr.shape and got_raw.dtype == arr.dtype, dt
        np.testing.assert_array_equal(got_raw, arr, err_msg=dt)
        np.testing.assert_array_equal(got_json, got_raw, err_msg=dt)
        assert by_raw.get_output(f"out_{dt}")["parameters"]["binary_data_size"] > 0


async def test_outputs_asked_as_json_come_back_as_json(echo: Client) -> None:
    arrays = models.echo_inputs(1, 2, seed=3)
    asked = [httpclient.InferRequestedOutput("out_FP64", binary_data=False),
             httpclient.InferRequestedOutput("out_INT8", binary_data=True)]
    status, result, _ = await post(echo, *triton_request(arrays, outputs=asked))
    assert status == 200
    assert [o["name"] for o in result.get_response()["outputs"]] == ["out_FP64", "out_INT8"]
    assert "data" in result.get_output("out_FP64")
    assert "data" not in result.get_output("out_INT8")
    np.testing.assert_array_equal(result.as_numpy("out_FP64"), arrays["FP64"])
    np.testing.assert_array_equal(result.as_numpy("out_INT8"), arrays["INT8"])
    plain = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                         "data": [1, 2, 3, 4]}]}
    r = await echo.post("/v2/models/alpha/infer", json=plain)
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    assert HEADER not in r.headers and "data" in (await r.json())["outputs"][0]


async def test_the_clients_timeout_shortens_the_deadline(echo: Client) -> None:
    x = httpclient.InferInput("x", [64, 512], "FP32")
    x.set_data_from_numpy(np.ones((64, 512), np.float32))
    body, size = TC.generate_request_body([x], timeout=1)  # one microsecond
    status, doc, _ = await post(echo, bytes(body), {HEADER: str(size)}, model="slow")
    assert status == 504, doc
    body, size = TC.generate_request_body([x], timeout=60_000_000)
    status, result, _ = await post(echo, bytes(body), {HEADER: str(size)}, model="slow")
    assert status == 200 and result.as_numpy("y").shape == (64, 512)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_request_bodies_are_read(echo: Client, encoding: str) -> None:
    body, headers = triton_request(models.echo_inputs(seed=4))
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    status, result, _ = await post(echo, packed, {**headers, "Content-Encoding": encoding})
    assert status == 200
    np.testing.assert_array_equal(result.as_numpy("out_INT64"), models.echo_inputs(seed=4)["INT64"])


async def test_a_compressed_body_is_limited_after_decompression(echo: Client) -> None:
    x = np.zeros((MAX_BODY // 16, 4), np.float32)  # 256 KiB of zeros, a few KiB zipped
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    body, size = TC.generate_request_body([inp])
    packed = gzip.compress(bytes(body))
    assert len(packed) < MAX_BODY // 10
    status, doc, _ = await post(echo, packed, {HEADER: str(size), "Content-Encoding": "gzip"},
                                model="alpha")
    assert status == 413, doc


def _raw_body(size: int, data: bytes, header_delta: int = 0) -> tuple[bytes, dict[str, str]]:
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                   "parameters": {"binary_data_size": size}}]}).encode()
    return head + data, {HEADER: str(len(head) + header_delta)}


X = np.arange(4, dtype=np.float32).tobytes()


@pytest.mark.parametrize(("body", "fragments"), [
    (_raw_body(12, X[:12]), ["input 'x'", "binary_data_size is 12", "needs 16 bytes"]),
    (_raw_body(16, X[:9]), ["input 'x'", "binary_data_size is 16", "truncated"]),
    (_raw_body(16, X + b"tail"), ["4 byte(s) after the JSON"]),
    (_raw_body(16, X, header_delta=3), ["not valid JSON", HEADER]),
    (_raw_body(16, X, header_delta=10**6), [HEADER, "only"]),
    ((_raw_body(16, X)[0], {HEADER: "sixteen"}), [HEADER, "non-negative integer"]),
    ((_raw_body(16, X)[0], {}), ["not valid JSON", HEADER]),
])
async def test_malformed_binary_requests_are_400_naming_the_field(
        echo: Client, body: tuple[bytes, dict[str, str]], fragments: list[str]) -> None:
    status, doc, _ = await post(echo, *body, model="alpha")
    assert status == 400, doc
    text = doc["error"] + " " + doc["hint"]
    for fragment in fragments:
        assert fragment in text
    good = await post(echo, *_raw_body(16, X), model="alpha")  # and nothing was lost
    assert good[0] == 200
