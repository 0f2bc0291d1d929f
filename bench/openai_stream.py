"""One streamed chat completion against any OpenAI-compatible server, timed per token.

The same client measures every server (LLM OS's /v1 and llama-cpp-python's): time to the
first content chunk (TTFT) and the decode rate after it. ``parse_sse`` and ``timing`` are
pure; ``stream_chat`` does the HTTP.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Generation:
    """One generation: when the request went out, and when each content chunk arrived."""

    sent: float
    arrivals: tuple[float, ...]
    text: str
    completion_tokens: int  # from ``usage`` when the server sends it, else the chunk count

    def to_dict(self) -> dict[str, float | int]:
        ttft, rate = timing(self)
        return {"ttft_ms": ttft * 1000.0, "decode_tok_s": rate, "tokens": self.completion_tokens,
                "total_s": (self.arrivals[-1] - self.sent) if self.arrivals else 0.0}


def timing(gen: Generation) -> tuple[float, float]:
    """(TTFT seconds, decode tokens/s after the first token) (pure)."""
    if not gen.arrivals:
        raise ValueError("the server streamed no content")
    ttft = gen.arrivals[0] - gen.sent
    span = gen.arrivals[-1] - gen.arrivals[0]
    # Tokens after the first, over the time they took; chunks may carry several tokens,
    # so count tokens (usage), not chunks, when the server reports them.
    rate = (gen.completion_tokens - 1) / span if span > 0 and gen.completion_tokens > 1 else 0.0
    return ttft, rate


def parse_sse(lines: Iterable[bytes]) -> Iterator[dict[str, Any] | None]:
    """Server-sent events -> JSON payloads; ``None`` for the final ``[DONE]`` (pure)."""
    for raw in lines:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            yield None
            return
        yield json.loads(data)


def _content(event: Mapping[str, Any]) -> str:
    choices = event.get("choices") or []
    if not choices:
        return ""
    delta = choices[0].get("delta") or {}
    return str(delta.get("content") or choices[0].get("text") or "")


def stream_chat(base_url: str, model: str, messages: Sequence[Mapping[str, str]],
                max_tokens: int, timeout_s: float = 300.0) -> Generation:
    """POST /v1/chat/completions with ``stream: true``, greedy, and time each content chunk."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout_s)
    body = json.dumps({"model": model, "messages": list(messages), "max_tokens": max_tokens,
                       "temperature": 0.0, "stream": True, "seed": 0,
                       "stream_options": {"include_usage": True}})
    sent = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{base_url} answered {resp.status}: {resp.read()[:300]!r}")
    arrivals: list[float] = []
    parts: list[str] = []
    usage_tokens = 0
    for event in parse_sse(iter(resp.readline, b"")):
        if event is None:
            break
        piece = _content(event)
        if piece:
            arrivals.append(time.perf_counter())
            parts.append(piece)
        usage = event.get("usage") or {}
        usage_tokens = int(usage.get("completion_tokens") or usage_tokens)
    conn.close()
    return Generation(sent, tuple(arrivals), "".join(parts), usage_tokens or len(arrivals))
