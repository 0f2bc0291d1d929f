"""Stock clients against a real ``llmos serve`` process on the demo packs.

``tritonclient.http`` with its defaults (binary tensors both ways) must get the same numbers
as with JSON on every demo model that /v2 serves (the MiniLM packs: ONNX int8, ONNX float32,
TorchScript) and on ``echo``, a model with one input and output per v2 datatype. The
``openai`` client's embeddings (float and base64) must equal the v2 embeddings of the same
texts, and its model list must show every model with its kind.

The demo packs are the ones ``make demo-packs`` leaves in build/demo, sealed for
build/keys/fleet.key; where they are missing they are built (and cached) first.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
import tritonclient.http as httpclient
from bench.model_update import Server
from tritonclient.utils import InferenceServerException

from llmos.vault.keyfile import read_keyfile

from . import models
from .conftest import write_config

REPO = Path(__file__).resolve().parents[2]
EMBEDDERS = ("minilm", "minilm-fp32", "minilm-torch")
LLM = "smollm2"
DEMO = (*EMBEDDERS, LLM)
TEXTS = ["The capital of France is Paris.", "Un café, s'il vous plaît ☕",
         "a", "", "embeddings " * 400]  # the last one is longer than the model's 256 tokens


def demo_packs() -> tuple[Path, Path]:
    """(folder, fleet key) holding NAME.sealed for every demo pack."""
    folder, key = REPO / "build" / "demo", REPO / "build" / "keys" / "fleet.key"
    if key.is_file() and all((folder / f"{n}.sealed").is_file() for n in DEMO):
        return folder, key
    from llmos.demo import ensure

    folder = REPO / "build" / "test-cache" / "clients"
    ensure(folder, folder / "fleet.key")
    return folder, folder / "fleet.key"


@dataclass(frozen=True)
class Running:
    port: int

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            doc: dict[str, Any] = json.loads(r.read())
    except urllib.error.HTTPError as e:
        doc = json.loads(e.read())
    return doc


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder, key = demo_packs()
    root = tmp_path_factory.mktemp("clients")
    for d in ("home", "tmp", "state", "packs"):
        (root / d).mkdir()
    echo = root / "packs" / "echo.sealed"
    echo.write_bytes(models.sealed_pack(models.echo(), "echo", read_keyfile(key)))
    entries: list[dict[str, Any]] = [
        {"name": n, "pack": str(folder / f"{n}.sealed"), "threads": 1} for n in EMBEDDERS]
    entries += [{"name": LLM, "pack": str(folder / f"{LLM}.sealed"), "threads": 1,
                 "max_tokens": 16},
                {"name": "echo", "pack": str(echo), "max_queue_delay_ms": 1.0}]
    cfg = write_config(
        root / "llmos.toml",
        {"server": {"host": "127.0.0.1", "port": 0, "admin_port": 0,
                    "state_dir": str(root / "state"), "packs_dir": str(root / "packs")},
         "keys": {"provider": "keyfile", "keyfile": str(key), "allow_dev_key": True}},
        entries)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LLMOS_")},
           "HOME": str(root / "home"), "TMPDIR": str(root / "tmp"), "PYTHONUNBUFFERED": "1"}
    proc = Server(cfg, env, root)
    try:
        port = proc.port("api", timeout_s=120)
        deadline = time.monotonic() + 600
        while (doc := _health(port))["status"] == "starting":
            assert time.monotonic() < deadline, doc
            assert proc.proc.poll() is None, "".join(proc.lines)
            time.sleep(0.5)
        states = {n: m["state"] for n, m in doc["models"].items()}
        assert states == dict.fromkeys((*DEMO, "echo"), "READY"), "".join(proc.lines)
        yield Running(port)
    finally:
        assert proc.stop() == 0, "".join(proc.lines[-40:])


@pytest.fixture(scope="module")
def triton(server: Running) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(url=server.host, network_timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="module")
def oai(server: Running) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=f"http://{server.host}/v1", api_key="none",
                           max_retries=0, timeout=300)
    yield client
    client.close()


def text_input(texts: list[str], binary: bool = True) -> httpclient.InferInput:
    arr = np.array([t.encode() for t in texts], dtype=object)
    i = httpclient.InferInput("text", [len(texts)], "BYTES")
    i.set_data_from_numpy(arr, binary_data=binary)
    return i


def v2_embeddings(triton: httpclient.InferenceServerClient, model: str,
                  texts: list[str]) -> np.ndarray:
    """tritonclient's defaults: binary input, binary_data_output for every output."""
    result = triton.infer(model, [text_input(texts)])
    assert result.get_output("embedding")["parameters"]["binary_data_size"] > 0
    out: np.ndarray = result.as_numpy("embedding")
    return out


@pytest.mark.parametrize("model", EMBEDDERS)
def test_tritonclient_defaults_equal_json_on_the_demo_models(
        triton: httpclient.InferenceServerClient, model: str) -> None:
    assert triton.is_server_live() and triton.is_model_ready(model)
    meta = triton.get_model_metadata(model)
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    by_raw = v2_embeddings(triton, model, TEXTS)
    as_json = [httpclient.InferRequestedOutput("embedding", binary_data=False)]
    result = triton.infer(model, [text_input(TEXTS, binary=False)], outputs=as_json)
    assert "data" in result.get_output("embedding")
    by_json = result.as_numpy("embedding")
    assert by_raw.dtype == np.float32 and by_raw.shape == (len(TEXTS), 384)
    np.testing.assert_array_equal(by_json, by_raw)
    np.testing.assert_allclose(np.linalg.norm(by_raw, axis=1), 1.0, rtol=1e-4)
    zipped = triton.infer(model, [text_input(TEXTS)], request_compression_algorithm="gzip",
                          response_compression_algorithm="gzip")
    np.testing.assert_array_equal(zipped.as_numpy("embedding"), by_raw)


async def test_tritonclient_aio_defaults_equal_the_sync_client(
        server: Running, triton: httpclient.InferenceServerClient) -> None:
    import tritonclient.http.aio as aioclient

    client = aioclient.InferenceServerClient(url=server.host)
    try:
        text = aioclient.InferInput("text", [len(TEXTS)], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
        result = await client.infer(EMBEDDERS[1], [text])
    finally:
        await client.close()
    np.testing.assert_array_equal(result.as_numpy("embedding"),
                                  v2_embeddings(triton, EMBEDDERS[1], TEXTS))


def test_tritonclient_every_datatype_binary_and_json(
        triton: httpclient.InferenceServerClient) -> None:
    arrays = models.echo_inputs(3, 4, seed=11)

    def inputs(binary: bool) -> list[httpclient.InferInput]:
        out = []
        for dt, arr in arrays.items():
            i = httpclient.InferInput(f"in_{dt}", list(arr.shape), dt)
            i.set_data_from_numpy(arr, binary_data=binary)
            out.append(i)
        return out

    by_raw = triton.infer("echo", inputs(True))
    as_json = [httpclient.InferRequestedOutput(f"out_{dt}", binary_data=False)
               for dt in arrays]
    by_json = triton.infer("echo", inputs(False), outputs=as_json)
    for dt, arr in arrays.items():
        raw, js = by_raw.as_numpy(f"out_{dt}"), by_json.as_numpy(f"out_{dt}")
        if dt == "BYTES":  # tritonclient gives JSON BYTES back as str
            js = np.vectorize(str.encode, otypes=[object])(js)
        assert raw.dtype == arr.dtype and raw.shape == arr.shape, dt
        np.testing.assert_array_equal(raw, arr, err_msg=dt)
        np.testing.assert_array_equal(js, arr, err_msg=dt)


def test_tritonclient_sees_a_4xx_naming_the_problem(
        triton: httpclient.InferenceServerClient) -> None:
    bad = httpclient.InferInput("text", [1], "FP32")
    bad.set_data_from_numpy(np.zeros(1, np.float32))
    with pytest.raises(InferenceServerException) as err:
        triton.infer(EMBEDDERS[0], [bad])
    assert err.value.status() == "400" and "FP32" in err.value.message()
    assert v2_embeddings(triton, EMBEDDERS[0], ["still serving"]).shape == (1, 384)
    with pytest.raises(InferenceServerException) as err:
        triton.get_model_config(EMBEDDERS[0])  # a Triton-only extension
    assert err.value.status() == "404"
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]


@pytest.mark.parametrize("model", EMBEDDERS)
def test_openai_embeddings_equal_the_v2_embeddings(
        triton: httpclient.InferenceServerClient, oai: openai.OpenAI, model: str) -> None:
    v2 = v2_embeddings(triton, model, TEXTS)
    default = oai.embeddings.create(model=model, input=TEXTS)  # the client asks base64
    floats = oai.embeddings.create(model=model, input=TEXTS, encoding_format="float")
    for reply in (default, floats):
        assert reply.model == model and [d.index for d in reply.data] == list(range(len(TEXTS)))
        got = np.array([d.embedding for d in reply.data])  # float64 in the client
        np.testing.assert_array_equal(got.astype(np.float32), v2)  # the very same float32s
    # One text alone (a batch of one on both routes: the int8 pack's dynamic activation
    # quantisation makes a text's vector depend slightly on the texts batched with it).
    one = oai.embeddings.create(model=model, input=TEXTS[0], dimensions=384)
    np.testing.assert_array_equal(np.array(one.data[0].embedding, np.float32),
                                  v2_embeddings(triton, model, TEXTS[:1])[0])


def test_a_large_request_is_answered_alike(triton: httpclient.InferenceServerClient,
                                          oai: openai.OpenAI) -> None:
    """Past 16k characters the usage count and the body are made on a worker thread."""
    texts = [f"text number {i}: " + "a sentence about sealed models. " * 12 for i in range(48)]
    assert sum(map(len, texts)) > 16 * 1024
    v2 = v2_embeddings(triton, EMBEDDERS[1], texts)
    reply = oai.embeddings.create(model=EMBEDDERS[1], input=texts, encoding_format="float")
    np.testing.assert_array_equal(np.array([d.embedding for d in reply.data], np.float32), v2)
    assert reply.usage.prompt_tokens > 48 * 12 * 5


def test_openai_usage_counts_the_tokens_the_model_saw(oai: openai.OpenAI) -> None:
    from tokenizers import Tokenizer

    from llmos.demo.minilm import MAX_LENGTH, model_dir

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_LENGTH)
    expected = sum(len(tok.encode(t).ids) for t in TEXTS)
    reply = oai.embeddings.create(model=EMBEDDERS[0], input=TEXTS)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == expected
    assert expected > MAX_LENGTH  # the long text counts as truncated, not whole


def test_openai_refusals_are_4xx_in_openai_shape(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model=EMBEDDERS[0], input="x", dimensions=128)
    assert err.value.body["param"] == "dimensions"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model=EMBEDDERS[0], input=[[101, 2023, 102]])
    assert err.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:
        oai.embeddings.create(model=LLM, input="x")
    assert err.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        oai.embeddings.create(model="no-such-model", input="x")


def test_openai_models_list_shows_every_model_with_its_kind(oai: openai.OpenAI) -> None:
    cards = {m.id: m for m in oai.models.list()}
    kinds = {name: (card.model_extra or {})["kind"] for name, card in cards.items()}
    assert kinds == {**dict.fromkeys(EMBEDDERS, "embedding"), LLM: "causal-lm",
                     "echo": "tensor"}
    assert (cards[EMBEDDERS[0]].model_extra or {})["dimensions"] == 384
    assert (cards[LLM].model_extra or {})["max_model_len"] > 0
