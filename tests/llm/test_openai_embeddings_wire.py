"""The OpenAI embeddings wire format (pure)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from llmos.llm.openai_embeddings import embeddings_request, embeddings_response, model_cards
from llmos.llm.openai_fields import FieldError

VECTORS = np.array([[0.5, -0.25, 1e-8], [1.0, 0.0, -1.0]], dtype=np.float32)


def test_string_and_list_inputs() -> None:
    assert embeddings_request({"model": "m", "input": "hi"}).texts == ("hi",)
    req = embeddings_request({"model": "m", "input": ["a", "b"], "user": "u"})
    assert (req.texts, req.encoding_format, req.dimensions) == (("a", "b"), "float", None)


def test_float_and_base64_answers_carry_the_same_vectors() -> None:
    floats = embeddings_response(embeddings_request({"model": "m", "input": ["a", "b"]}),
                                 VECTORS, 7)
    b64 = embeddings_response(embeddings_request(
        {"model": "m", "input": ["a", "b"], "encoding_format": "base64"}), VECTORS, 7)
    assert floats["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [d["index"] for d in floats["data"]] == [0, 1]
    for i, (f, b) in enumerate(zip(floats["data"], b64["data"], strict=True)):
        assert np.array_equal(np.array(f["embedding"], dtype=np.float32), VECTORS[i])
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert np.array_equal(decoded, VECTORS[i])


@pytest.mark.parametrize(("doc", "param"), [
    ({"input": "x"}, "model"),
    ({"model": "m", "input": [[1, 2]]}, "input"),
    ({"model": "m", "input": ""}, None),  # an empty string is a text (its vector exists)
    ({"model": "m", "input": ["x"] * 2049}, "input"),
    ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "m", "input": "x", "dimensions": True}, "dimensions"),
    ({"model": "m", "input": "x", "truncate": "END"}, "truncate"),  # unknown: never ignored
])
def test_malformed_requests_name_their_field(doc: dict[str, object], param: str | None) -> None:
    if param is None:
        assert embeddings_request(doc).texts == ("",)
        return
    with pytest.raises(FieldError) as info:
        embeddings_request(doc)
    assert info.value.param == param


def test_dimensions_must_be_the_models_own() -> None:
    req = embeddings_request({"model": "m", "input": "x", "dimensions": 3})
    assert len(embeddings_response(req, VECTORS[:1], 1)["data"][0]["embedding"]) == 3
    with pytest.raises(FieldError, match="gives 3 dimensions, not 2"):
        embeddings_response(embeddings_request(
            {"model": "m", "input": "x", "dimensions": 2}), VECTORS[:1], 1)


def test_model_cards_carry_the_kind_and_an_lms_context() -> None:
    doc = model_cards([("lm", "causal-lm", 5, 2048), ("e", "embedding", 6, None)])
    assert [(c["id"], c["kind"], c.get("max_model_len")) for c in doc["data"]] == [
        ("lm", "causal-lm", 2048), ("e", "embedding", None)]
