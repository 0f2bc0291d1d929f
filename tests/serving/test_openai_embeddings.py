"""The OpenAI embeddings wire format (pure): requests parse or name the field, responses
carry float lists or base64 float32 that decode to the same numbers."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from llmos.llm import openai_embeddings as emb
from llmos.llm.openai_protocol import FieldError


def test_a_string_or_a_list_of_strings() -> None:
    one = emb.parse_request({"model": "m", "input": "héllo"})
    assert one.texts == ("héllo",) and one.encoding_format == "float"
    many = emb.parse_request({"model": "m", "input": ["a", ""], "encoding_format": "base64",
                              "user": "u", "dimensions": 384})
    assert many.texts == ("a", "") and many.encoding_format == "base64"
    assert many.dimensions == 384


@pytest.mark.parametrize(("doc", "param", "fragment"), [
    ({"input": "x"}, "model", "is required"),
    ({"model": "m"}, "input", "is required"),
    ({"model": "m", "input": []}, "input", "non-empty"),
    ({"model": "m", "input": [1, 2, 3]}, "input", "token-id arrays are not supported"),
    ({"model": "m", "input": [[1, 2], [3]]}, "input", "token-id arrays are not supported"),
    ({"model": "m", "input": ["a", 1]}, "input", "list of strings"),
    ({"model": "m", "input": ["a"] * (emb.MAX_INPUTS + 1)}, "input", "at most 2048"),
    ({"model": "m", "input": "a", "encoding_format": "int8"}, "encoding_format", "int8"),
    ({"model": "m", "input": "a", "dimensions": 0}, "dimensions", "positive integer"),
    ({"model": "m", "input": "a", "user": 5}, "user", "must be a string"),
    ({"model": "m", "input": "a", "truncate": True}, "truncate", "not supported"),
])
def test_refusals_name_the_field(doc: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(FieldError) as err:
        emb.parse_request(doc)
    assert err.value.param == param and fragment in err.value.message


def test_dimensions_other_than_the_models_are_refused() -> None:
    emb.check_dimensions(emb.parse_request({"model": "m", "input": "a"}), 384)
    emb.check_dimensions(emb.parse_request({"model": "m", "input": "a", "dimensions": 384}), 384)
    with pytest.raises(FieldError) as err:
        emb.check_dimensions(emb.parse_request({"model": "m", "input": "a",
                                                "dimensions": 128}), 384)
    assert err.value.param == "dimensions" and "384" in err.value.message


def test_float_and_base64_carry_the_same_float32_numbers() -> None:
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    floats = emb.response("m", vectors, "float", 7)
    packed = emb.response("m", vectors, "base64", 7)
    assert floats["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [d["index"] for d in floats["data"]] == [0, 1, 2]
    for i, (f, b) in enumerate(zip(floats["data"], packed["data"], strict=True)):
        assert f["object"] == "embedding" and isinstance(b["embedding"], str)
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, vectors[i])
        np.testing.assert_array_equal(np.array(f["embedding"], np.float32), vectors[i])


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_response_bytes_equal_the_response_document(encoding: str) -> None:
    vectors = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    written = json.loads(emb.response_bytes('m "x"', vectors, encoding, 9))
    doc = emb.response('m "x"', vectors, encoding, 9)
    assert written["model"] == doc["model"] and written["usage"] == doc["usage"]
    assert [d["index"] for d in written["data"]] == [0, 1, 2, 3]
    if encoding == "base64":
        assert written == doc
    else:
        got = np.array([d["embedding"] for d in written["data"]], np.float32)
        np.testing.assert_array_equal(got, vectors)  # %.9g gives back the same float32


def test_response_bytes_of_nothing_and_of_non_finite_values() -> None:
    empty = json.loads(emb.response_bytes("m", np.zeros((0, 8), np.float32), "float", 0))
    assert empty["data"] == []
    odd = np.array([[np.inf, 1.0]], np.float32)
    assert b"Infinity" in emb.response_bytes("m", odd, "float", 1)
