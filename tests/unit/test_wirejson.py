"""Strict JSON at the edge: every body that is not RFC 8259 JSON is a BadRequestError."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmos.errors import BadRequestError
from llmos.serving.wirejson import MAX_DEPTH, dumps, loads, max_depth


@pytest.mark.parametrize("body, words", [
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),  # RecursionError in json
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested deeper"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested deeper"),
    (b'{"x": NaN}', "NaN"),
    (b'[Infinity]', "Infinity"),
    (b'[-Infinity]', "-Infinity"),
    (b'{"p": "\xff"}', "not UTF-8"),
    (b'{"n": ' + b"9" * 5000 + b"}", "not valid JSON"),  # int() digit limit
    (b'{"a": 1', "not valid JSON"),
])
def test_malformed_bodies_are_bad_requests(body: bytes, words: str) -> None:
    with pytest.raises(BadRequestError, match=words):
        loads(body)


def test_a_lone_surrogate_is_refused_naming_its_field() -> None:
    with pytest.raises(BadRequestError) as caught:
        loads(b'{"messages": [{"role": "user", "content": "ok \\udfff"}]}')
    assert caught.value.param == "messages[0].content"
    assert "U+DFFF" in caught.value.message


def test_a_surrogate_pair_and_allowed_depth_pass() -> None:
    assert loads(b'{"e": "\\ud83d\\ude00"}') == {"e": "\U0001F600"}
    deep = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert max_depth(deep) == MAX_DEPTH and loads(deep) is not None
    assert loads(json.dumps({"s": "[[[[" * 100}).encode()) == {"s": "[[[[" * 100}
    assert loads(b"[1e-400, 1.5]") == [0.0, 1.5]


@pytest.mark.parametrize("doc", [
    {"top_k": 10**30, "seed": -(2**63) - 1, "u64": 2**64 - 1, "n": [1, 2**70, -(2**65)]},
    {"x": [0.00012345678901234567891, 1e-300, -2.5e300, 3, True, None, "9" * 30]},
    {"nested": [[1.0, 2**64], [3.5, "a"]], "e": "\U0001F600", "z": "\x00"},
])
def test_every_value_reads_as_json_reads_it(doc: dict[str, object]) -> None:
    """Integers beyond 64 bits stay exact ints (orjson alone would give floats)."""
    body = json.dumps(doc).encode()
    got = loads(body)
    assert got == json.loads(body)
    assert repr(got) == repr(json.loads(body))  # ints stay ints, floats floats


def test_dumps_writes_arrays_that_read_back_exactly() -> None:
    rng = np.random.default_rng(5)
    for dtype, exponent in ((np.float16, 4), (np.float32, 30), (np.float64, 300)):
        scale = 10.0 ** rng.integers(-exponent, exponent, 257)
        arr = (rng.standard_normal(257) * scale).astype(dtype)
        assert np.isfinite(arr).all()
        back = np.array(json.loads(dumps({"a": arr}))["a"], dtype)
        np.testing.assert_array_equal(back, arr)
    assert json.loads(dumps({"i": np.array([-1, 2**40], np.int64)})) == {"i": [-1, 2**40]}
