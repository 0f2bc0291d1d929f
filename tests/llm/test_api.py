"""The OpenAI-compatible API on a real server, driven by the ``openai`` client library.

The server runs in a thread of its own (its own event loop) and serves the sealed int8
SmolLM2 pack with two decode slots and a waiting queue of one, so the tests can fill it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from llmos import config
from llmos.app import LlmOs
from llmos.systemd import Notifier
from llmos.vault.kek import generate_kek
from llmos.vault.keyfile import write_keyfile
from llmos.vault.sealed import seal_pack_file

from .conftest import THREADS, PackPath

MODEL = "smollm2"
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}]
LONG = 1500  # max_tokens of generations that are meant to be cut short


@dataclass(frozen=True)
class Running:
    base: str  # http://127.0.0.1:PORT


def user(text: str) -> ChatCompletionMessageParam:
    return {"role": "user", "content": text}


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _config(tmp: Path, pack: Path) -> Path:
    kek = generate_kek()
    write_keyfile(tmp / "fleet.key", kek)
    seal_pack_file(pack, tmp / "smollm2.sealed", kek)
    path = tmp / "llmos.toml"
    path.write_text(f"""
[server]
host = "127.0.0.1"
port = 0
admin_port = 0
state_dir = "{tmp / 'state'}"
[keys]
provider = "keyfile"
keyfile = "{tmp / 'fleet.key'}"
allow_dev_key = true
[[models]]
name = "{MODEL}"
pack = "{tmp / 'smollm2.sealed'}"
max_running = 2
queue_size = 1
max_tokens = {LONG}
threads = {THREADS}
""")
    return path


@pytest.fixture(scope="module")
def server(llm_pack: PackPath, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    cfg = config.load(_config(tmp_path_factory.mktemp("api"), llm_pack("smollm2")), environ={})
    loop = asyncio.new_event_loop()
    root = LlmOs(cfg, notifier=Notifier({}))
    srv = root.server()
    thread = threading.Thread(target=loop.run_forever, name="api-server", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(srv.start(), loop).result(60)
    host, port = srv.addresses["api"]
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + 300
    while json.loads(get(f"{base}/health")[1])["status"] == "starting":
        assert time.monotonic() < deadline, "the model did not load"
        time.sleep(0.2)
    assert get(f"{base}/v2/models/{MODEL}/ready")[0] == 200
    yield Running(base)
    asyncio.run_coroutine_threadsafe(srv.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture
async def client(server: Running) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=f"{server.base}/v1", api_key="none",
                                  max_retries=0, timeout=300) as c:
        yield c


def gauge(server: Running, name: str) -> float:
    text = get(f"{server.base}/metrics")[1].decode()
    match = re.search(rf'^{re.escape(name)}{{model_name="{MODEL}"}} (\S+)$', text, re.M)
    assert match, f"{name} is not in /metrics"
    return float(match.group(1))


def finished(server: Running) -> float:
    """Requests that ran to their end (cancelled ones do not count)."""
    text = get(f"{server.base}/metrics")[1].decode()
    return sum(float(v) for v in re.findall(
        rf'^vllm:request_success_total{{[^}}]*model_name="{MODEL}"[^}}]*}} (\S+)$', text, re.M))


async def wait_running(server: Running, n: int) -> None:
    for _ in range(600):
        if gauge(server, "vllm:num_requests_running") == n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"running requests never became {n}")


async def test_models_lists_the_language_model(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL]


async def test_chat_completion_answers_with_usage(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model=MODEL, messages=QUESTION,
                                             temperature=0, max_tokens=30)
    choice = r.choices[0]
    assert "Paris" in (choice.message.content or "")
    assert choice.finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens > 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


async def test_streamed_chat_equals_the_whole_answer(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(model=MODEL, messages=QUESTION,
                                                 temperature=0, max_tokens=30)
    stream = await client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=30, stream=True,
        stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert len([p for p in pieces if p]) > 3  # really streamed, piece by piece
    assert "".join(pieces) == whole.choices[0].message.content
    assert finish == "stop"
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens


async def test_completions_stream_and_not(client: openai.AsyncOpenAI) -> None:
    prompt = "The capital of France is"
    whole = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=8,
                                            temperature=0)
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 8
    assert "Paris" in whole.choices[0].text
    stream = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=8,
                                             temperature=0, stream=True)
    text = "".join([c.choices[0].text async for c in stream])
    assert text == whole.choices[0].text


async def test_stop_sequence_and_seed(client: openai.AsyncOpenAI) -> None:
    r = await client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=20,
                                        temperature=0, stop=[" 7"])
    assert r.choices[0].finish_reason == "stop"
    assert "7" not in r.choices[0].text and "6" in r.choices[0].text

    async def sampled(seed: int) -> str:
        out = await client.completions.create(model=MODEL, prompt="Once upon a time",
                                              max_tokens=12, temperature=1.0, seed=seed)
        return out.choices[0].text

    assert await sampled(5) == await sampled(5)


async def test_two_streams_progress_together(client: openai.AsyncOpenAI) -> None:
    arrivals: list[str] = []

    async def consume(tag: str, question: str) -> None:
        stream = await client.chat.completions.create(
            model=MODEL, messages=[user(question)], temperature=0,
            max_tokens=25, stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(tag)

    await asyncio.gather(consume("a", "Describe a cat."), consume("b", "Describe a dog."))
    first_b, last_a = arrivals.index("b"), len(arrivals) - 1 - arrivals[::-1].index("a")
    first_a, last_b = arrivals.index("a"), len(arrivals) - 1 - arrivals[::-1].index("b")
    assert first_b < last_a and first_a < last_b, arrivals  # interleaved, not one after another
    switches = sum(1 for x, y in itertools.pairwise(arrivals) if x != y)
    assert switches >= 5, arrivals


async def _open_stream(client: openai.AsyncOpenAI, text: str) -> Any:
    # ignore_eos (vLLM's extension): a stream meant to be cut short must not end by itself
    # first, as a fast model's short answer would (a race the queue test lost once).
    stream = await client.chat.completions.create(
        model=MODEL, messages=[user(text)], temperature=0.7,
        max_tokens=LONG, stream=True, extra_body={"ignore_eos": True})
    return stream


async def test_a_cancelled_stream_frees_its_slot(server: Running,
                                                 client: openai.AsyncOpenAI) -> None:
    done_before = finished(server)
    a = await _open_stream(client, "Write a very long story about a dragon.")
    b = await _open_stream(client, "Write a very long story about a knight.")
    await wait_running(server, 2)
    async for _ in a:  # a few tokens, then the client goes away
        break
    await a.close()
    await wait_running(server, 1)  # the slot came back while b still runs...
    assert finished(server) == done_before  # ...because a was cancelled, not finished
    short = await client.chat.completions.create(model=MODEL, messages=QUESTION,
                                                 temperature=0, max_tokens=10)
    assert short.choices[0].message.content
    assert gauge(server, "vllm:num_requests_running") >= 1  # b has not finished
    await b.close()
    await wait_running(server, 0)


async def test_full_queue_answers_503(server: Running, client: openai.AsyncOpenAI) -> None:
    streams = [await _open_stream(client, f"Count to {n} slowly.") for n in (100, 200)]
    await wait_running(server, 2)
    streams.append(await _open_stream(client, "This one waits."))  # the queue's one place
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=5)
    assert info.value.status_code == 503
    assert info.value.response.headers.get("Retry-After")
    for s in streams:
        await s.close()
    await wait_running(server, 0)


async def test_too_long_prompt_is_400_naming_the_lengths(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.completions.create(model=MODEL, prompt="hello " * 3000, max_tokens=5)
    message = str(info.value)
    counted = re.search(r"(\d+) tokens", message)
    assert counted and int(counted.group(1)) >= 3000, message  # the prompt's length...
    assert "2048" in message  # ...and the context's


@pytest.mark.parametrize(("body", "field"), [
    ({"model": MODEL, "messages": QUESTION, "n": 99}, "n"),
    ({"model": MODEL}, "messages"),
    ({"model": MODEL, "messages": QUESTION, "temperature": "hot"}, "temperature"),
    ({"messages": QUESTION}, "model"),
])
async def test_malformed_requests_are_400_naming_the_field(server: Running, body: Any,
                                                           field: str) -> None:
    async with aiohttp.ClientSession() as http, \
            http.post(f"{server.base}/v1/chat/completions", json=body) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == field


async def test_unknown_model_is_404(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await client.completions.create(model="nope", prompt="x", max_tokens=2)


async def test_vllm_metrics_are_exposed(server: Running, client: openai.AsyncOpenAI) -> None:
    await client.completions.create(model=MODEL, prompt="Hello", max_tokens=3, temperature=0)
    text = get(f"{server.base}/metrics")[1].decode()
    for name in ("vllm:time_to_first_token_seconds_count", "vllm:inter_token_latency_seconds_count",
                 "vllm:e2e_request_latency_seconds_count", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:prefix_cache_queries_total",
                 "llmos:prefix_cache_bytes"):
        match = re.search(rf'^{name}{{model_name="{MODEL}"}} (\S+)$', text, re.M)
        assert match and float(match.group(1)) > 0, name
    assert gauge(server, "vllm:num_requests_waiting") == 0
