"""A language-model request whose deadline passes in the queue or the prefill is answered
504 (a stream: an error event) and stops using the CPU: its prefill is interrupted. Other requests
are served meanwhile."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from .conftest import EMBEDDER, LLM, start_server, stop_server

# One intra-op thread: the long prefill takes seconds on a fast many-core machine too.
ONE_THREAD = "threads = 1"
LONG = "the quick brown fox jumps over the lazy dog " * 200  # ~1,850 tokens to prefill


def _chat(url: str, stream: bool) -> requests.Response:
    body: dict[str, Any] = {"model": LLM, "stream": stream, "max_tokens": 4,
                            "messages": [{"role": "user", "content": LONG}]}
    return requests.post(f"{url}/v1/chat/completions", json=body, timeout=120, stream=stream)


def _embed(url: str) -> requests.Response:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                        "data": ["served beside a late request"]}]}
    return requests.post(f"{url}/v2/models/{EMBEDDER}/infer", json=body, timeout=120)


def _wait_for_an_interrupted_prefill(log: Path) -> None:
    """The engine's log line, which comes once onnxruntime has seen the terminate flag (the
    next graph node; the 504 may be sent before)."""
    deadline = time.monotonic() + 30
    while "was interrupted (request cancelled)" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)


def test_a_late_llm_request_is_504_its_prefill_stops_and_others_are_served(
        tmp_path: Path) -> None:
    # 1 s: long enough for the prefill to start, far less than a 1,850-token prefill of
    # SmolLM2 takes on one thread of any CPU
    served = start_server(tmp_path, llm_extra=f"timeout_s = 1.0\n{ONE_THREAD}")
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
        _wait_for_an_interrupted_prefill(served.log)
    finally:
        stop_server(served)


def test_a_client_that_disconnects_during_the_prefill_stops_it(tmp_path: Path) -> None:
    """No deadline is near (30 s): only the client going away can stop the prefill."""
    served = start_server(tmp_path, llm_extra=ONE_THREAD)
    try:
        host, port = served.url.removeprefix("http://").split(":")
        body = json.dumps({"model": LLM, "max_tokens": 4,
                           "messages": [{"role": "user", "content": LONG}]}).encode()
        with socket.create_connection((host, int(port)), timeout=30) as client:
            client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(1.0)  # tokenised and submitted; the prefill takes seconds
        _wait_for_an_interrupted_prefill(served.log)
        assert _embed(served.url).status_code == 200
        assert served.alive()
    finally:
        stop_server(served)
