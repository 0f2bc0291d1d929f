from __future__ import annotations

import json

import pytest

from bench.openai_stream import Generation, parse_sse, timing


def _event(content: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"delta": {"content": content}}]}).encode()


def test_parse_sse_yields_payloads_then_done() -> None:
    lines = [b": comment\n", _event("Hel") + b"\n", b"\n", _event("lo") + b"\n",
             b"data: [DONE]\n", _event("after done") + b"\n"]
    events = list(parse_sse(lines))
    assert events[-1] is None
    assert [e["choices"][0]["delta"]["content"] for e in events[:-1] if e] == ["Hel", "lo"]


def test_timing_counts_tokens_after_the_first() -> None:
    gen = Generation(sent=10.0, arrivals=(10.05, 10.15, 10.25), text="abc", completion_tokens=3)
    ttft, rate = timing(gen)
    assert ttft == pytest.approx(0.05)
    assert rate == pytest.approx(2 / 0.2)
    # usage says more tokens than chunks arrived: the rate follows the tokens
    assert timing(Generation(10.0, (10.05, 10.25), "ab", 5))[1] == pytest.approx(4 / 0.2)


def test_timing_of_nothing_fails() -> None:
    with pytest.raises(ValueError):
        timing(Generation(0.0, (), "", 0))
