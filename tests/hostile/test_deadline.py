"""A language-model request whose deadline passes in the queue or the prefill is answered
504 (a stream: an error event) and stops using the CPU: its prefill is interrupted. Other requests
are served meanwhile."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from .conftest import EMBEDDER, LLM, start_server, stop_server

LONG = "the quick brown fox jumps over the lazy dog " * 200  # ~1,850 tokens to prefill


def _chat(url: str, stream: bool) -> requests.Response:
    body: dict[str, Any] = {"model": LLM, "stream": stream, "max_tokens": 4,
                            "messages": [{"role": "user", "content": LONG}]}
    return requests.post(f"{url}/v1/chat/completions", json=body, timeout=120, stream=stream)


def _embed(url: str) -> requests.Response:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                        "data": ["served beside a late request"]}]}
    return requests.post(f"{url}/v2/models/{EMBEDDER}/infer", json=body, timeout=120)


def test_a_late_llm_request_is_504_its_prefill_stops_and_others_are_served(
        tmp_path: Path) -> None:
    # 0.5 s: long enough for the prefill to start, far less than a 1,850-token prefill of
    # SmolLM2 takes on a CPU
    served = start_server(tmp_path, llm_extra="timeout_s = 0.5")
    try:
        with ThreadPoolExecutor(3) as pool:
            plain = pool.submit(_chat, served.url, False)
            streamed = pool.submit(_chat, served.url, True)
            other = pool.submit(_embed, served.url)
            late = plain.result()
            assert late.status_code == 504, late.text[:500]
            error = late.json()["error"]
            assert error["type"] == "InferenceTimeoutError" and "deadline" in error["message"]
            # a stream's headers went out when it was accepted: the error is its one event
            events = [json.loads(line[len(b"data: "):])
                      for line in streamed.result().iter_lines() if line]
            assert [e["error"]["type"] for e in events] == ["InferenceTimeoutError"], events
            assert other.result().status_code == 200
        assert served.alive()
        # The engine logs the interrupt once onnxruntime has stopped the run (at the next
        # graph node), which may be after the 504 went out and the other request returned.
        waited_until = time.monotonic() + 30
        while ("was interrupted (request cancelled)" not in served.log.read_text()
               and time.monotonic() < waited_until):
            time.sleep(0.1)
        log = served.log.read_text()
        assert "was interrupted (request cancelled)" in log, log[-3000:]
    finally:
        stop_server(served)
