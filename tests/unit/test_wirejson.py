"""Strict JSON at the edge: every body that is not RFC 8259 JSON is a BadRequestError."""

from __future__ import annotations

import json

import pytest

from llmos.errors import BadRequestError
from llmos.serving.wirejson import MAX_DEPTH, loads, max_depth


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
