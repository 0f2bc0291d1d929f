"""The issue's check: MiniLM embeddings served over HTTP match onnxruntime on the fp32 model.

The demo packs (int8 and fp32) are built once into build/test-cache (a second run finds
them up to date) and sealed for a key kept there; the reference is the plaintext fp32 ONNX
export the build leaves in its work folder, run directly by onnxruntime with the model's
own tokenizer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from tokenizers import Tokenizer

from .conftest import Start, wait_settled, write_config

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "Someone performs music with a guitar in front of an audience.",
    "The stock market fell sharply after the announcement.",
    "Sealed model packs are decrypted in memory and never written to disk in plaintext.",
]
# A one-word text: the fp32 model must match on it too. (The int8 pack drifts to a cosine
# of about 0.983 on it alone: too few tokens for per-batch activation scales. The int8
# bound below is the issue's, for sentences.)
TEXTS = [*SENTENCES, "ok"]


@pytest.fixture(scope="session")
def minilm_packs(minilm_demo: dict[str, Path]) -> dict[str, Path]:
    return minilm_demo


def _reference(model: Path, texts: list[str]) -> np.ndarray:
    from llmos.demo.minilm import MAX_LENGTH, model_dir

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(MAX_LENGTH)
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64)}
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, feed)[0]
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    result: np.ndarray = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1)
                                               * np.linalg.norm(b64, axis=1))
    return result


def _body(texts: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                        "data": texts}]}


async def test_served_embeddings_match_onnxruntime(start_app: Start, minilm_packs: dict[str, Path],
                                                   tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "minilm.toml",
        {"server": {"host": "127.0.0.1", "port": 0, "admin_port": 0},
         "keys": {"provider": "keyfile", "keyfile": str(minilm_packs["keyfile"]),
                  "allow_dev_key": True}},
        [{"name": "minilm", "pack": str(minilm_packs["minilm"])},
         {"name": "minilm-fp32", "pack": str(minilm_packs["minilm-fp32"])}])
    client, _ = await start_app(path)
    health = await wait_settled(client, timeout_s=300)
    assert health["status"] == "ready", health
    reference = _reference(minilm_packs["reference"], TEXTS)

    meta = await (await client.get("/v2/models/minilm")).json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]

    served: dict[str, np.ndarray] = {}
    for name, texts in (("minilm-fp32", TEXTS), ("minilm", SENTENCES)):
        r = await client.post(f"/v2/models/{name}/infer", json=_body(texts))
        assert r.status == 200, await r.text()
        out = (await r.json())["outputs"][0]
        assert out["name"] == "embedding" and out["datatype"] == "FP32"
        assert out["shape"] == [len(texts), 384]
        served[name] = np.array(out["data"], np.float32).reshape(out["shape"])
    assert _cosines(served["minilm-fp32"], reference).min() > 0.9999
    assert _cosines(served["minilm"], reference[:len(SENTENCES)]).min() > 0.99  # int8

    # Embeddings mean something: the paraphrase is nearer than the unrelated sentence.
    sims = served["minilm"] @ served["minilm"].T
    assert sims[0, 1] > sims[0, 2] + 0.3

    # One text per request, concurrently (so they are batched): the same vectors.
    for name, texts, bound in (("minilm-fp32", TEXTS, 0.9999), ("minilm", SENTENCES, 0.99)):
        resps = await asyncio.gather(*(client.post(f"/v2/models/{name}/infer",
                                                   json=_body([t])) for t in texts))
        single = np.array([(await r.json())["outputs"][0]["data"] for r in resps], np.float32)
        assert _cosines(single, reference[:len(texts)]).min() > bound, name
