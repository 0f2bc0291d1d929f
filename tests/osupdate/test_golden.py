"""The golden file's format and how a model is checked, decided from its manifest."""

from __future__ import annotations

import json

import pytest

from llmos.osupdate import golden
from llmos.osupdate.golden import ChatCheck, EmbeddingCheck


@pytest.mark.parametrize(("kind", "inputs", "check"), [
    ("causal-lm", [("input_ids", "INT64")], "chat"),
    ("embedding", [("text", "BYTES")], "embedding"),
    ("tensor", [("sentence", "BYTES")], "embedding"),
    ("tensor", [("x", "FP32")], None),
    ("tensor", [("a", "BYTES"), ("b", "BYTES")], None),
])
def test_the_check_follows_the_manifest(kind: str, inputs: list[tuple[str, str]],
                                        check: str | None) -> None:
    assert golden.check_kind(kind, inputs) == check


def test_round_trip() -> None:
    checks = (EmbeddingCheck("minilm", "t", (0.5, -0.25), input="sentence", output="vec"),
              ChatCheck("smollm2", "q?"))
    text = golden.dumps(checks)
    assert json.loads(text)["format"] == 1
    assert golden.loads(text) == checks


@pytest.mark.parametrize(("text", "why"), [
    ("{", "not JSON"),
    ('{"format": 2, "models": []}', "format 1"),
    ('{"format": 1, "models": []}', "no models"),
    ('{"format": 1, "models": [{"name": "m", "kind": "tensor"}]}', "unknown kind"),
    ('{"format": 1, "models": [{"name": "m", "kind": "embedding", "text": "t", '
     '"vector": [0, 0]}]}', "vector is empty or bad"),
    ('{"format": 1, "models": [{"name": "m", "kind": "embedding", "text": "t", '
     '"vector": [1], "endpoint": "grpc"}]}', "endpoint 'grpc'"),
    ('{"format": 1, "models": [{"name": "m", "kind": "chat"}]}', "lacks 'prompt'"),
    ('{"format": 1, "models": [{"kind": "chat", "prompt": "p"}]}', "with a name"),
])
def test_a_bad_golden_file_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        golden.loads(text)
