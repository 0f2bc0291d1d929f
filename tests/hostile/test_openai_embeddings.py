"""The stock ``openai`` client's embeddings and model list against the real ``llmos serve``
of this folder (both demo packs): the vectors are the v2 route's, bit for bit."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import openai
import pytest
import requests

from .conftest import EMBEDDER, LLM, Served

TEXTS = ["LLM OS serves sealed models.", "The cat sat on the mat.", "Paris is in France."]


@pytest.fixture
def client(served: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{served.url}/v1", api_key="none", max_retries=0,
                       timeout=120) as c:
        yield c


def v2_embeddings(served: Served, texts: list[str]) -> np.ndarray:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                        "data": texts}]}
    r = requests.post(f"{served.url}/v2/models/{EMBEDDER}/infer", json=body, timeout=60)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_models_lists_every_served_model_with_its_kind(client: openai.OpenAI) -> None:
    kinds = {m.id: getattr(m, "kind", None) for m in client.models.list().data}
    assert kinds == {EMBEDDER: "embedding", LLM: "causal-lm"}


def test_embeddings_equal_the_v2_embeddings(client: openai.OpenAI, served: Served) -> None:
    reference = v2_embeddings(served, TEXTS)
    # The client asks for base64 unless told otherwise, and decodes it itself.
    listed = client.embeddings.create(model=EMBEDDER, input=TEXTS)
    floats = client.embeddings.create(model=EMBEDDER, input=TEXTS, encoding_format="float")
    one = client.embeddings.create(model=EMBEDDER, input=TEXTS[1], user="someone")
    for answer in (listed, floats):
        assert [d.index for d in answer.data] == [0, 1, 2]
        got = np.array([d.embedding for d in answer.data], dtype=np.float32)
        assert np.array_equal(got, reference)
    # Compared with the same text alone on v2: the int8 model's vector for a text moves
    # slightly with its batch companions (seen here: a batch of three differs from each
    # text alone in the third decimal), so like is compared with like.
    alone = v2_embeddings(served, TEXTS[1:2])[0]
    assert np.array_equal(np.array(one.data[0].embedding, dtype=np.float32), alone)
    assert listed.usage.prompt_tokens == listed.usage.total_tokens > len(TEXTS)
    assert one.usage.prompt_tokens < listed.usage.prompt_tokens


def test_base64_is_the_float32_vector(client: openai.OpenAI, served: Served) -> None:
    raw = client.embeddings.create(model=EMBEDDER, input=TEXTS[:1], encoding_format="base64")
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)  # asked for explicitly: the client leaves it as it is
    vector = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert np.array_equal(vector, v2_embeddings(served, TEXTS[:1])[0])


@pytest.mark.parametrize(("body", "param"), [
    ({"model": EMBEDDER, "input": [1, 2, 3]}, "input"),
    ({"model": EMBEDDER, "input": []}, "input"),
    ({"model": EMBEDDER, "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": EMBEDDER, "input": "x", "dimensions": 5}, "dimensions"),
    ({"input": "x"}, "model"),
])
def test_bad_embedding_requests_are_400_naming_the_field(served: Served, body: dict[str, object],
                                                         param: str) -> None:
    r = requests.post(f"{served.url}/v1/embeddings", json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_a_language_model_is_no_embedding_model(served: Served) -> None:
    r = requests.post(f"{served.url}/v1/embeddings", json={"model": LLM, "input": "x"},
                      timeout=30)
    assert r.status_code == 400 and "not an embedding model" in r.json()["error"]["message"]
