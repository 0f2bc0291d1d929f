"""Prefix reuse and chunked prefill on the real SmolLM2 pack: the same tokens as without.

The model under test has a small prefix cache (a few blocks, so it evicts while serving)
and reads prompts in chunks of 8 tokens while others decode; the reference is the plain
served model, which has neither.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from llmos.llm.chat import Message
from llmos.llm.decoder import Decoder
from llmos.llm.engine import EngineLimits
from llmos.llm.generation import GenerationRequest
from llmos.llm.model import LanguageModel
from llmos.llm.sampling import SamplingParams

from .conftest import PackPath, load

GREEDY = SamplingParams(temperature=0.0)
SYSTEM = Message("system", "You are a careful assistant for a school library. Answer in one "
                           "short sentence, in plain words a child can follow, and never make "
                           "up facts you are not sure about: say that you do not know.")
QUESTIONS = ("What is the capital of France?", "Why is the sky blue?",
             "Name a prime number larger than ten.", "What do bees make?",
             "How many legs does a spider have?")
BLOCK = 16
LIMITS = EngineLimits(max_running=4, prefill_chunk=8, prefix_block_tokens=BLOCK,
                      prefix_cache_bytes=6 * BLOCK * 2 * 30 * 3 * 64 * 4)  # 6 blocks


@pytest.fixture(scope="module")
def cached_model(llm_pack: PackPath) -> Iterator[LanguageModel]:
    lm = load(llm_pack("smollm2"), LIMITS)
    yield lm
    lm.close()


def chats(lm: LanguageModel) -> list[tuple[int, ...]]:
    return [lm.encode(lm.chat_prompt([SYSTEM, Message("user", q)])) for q in QUESTIONS]


async def greedy(lm: LanguageModel, ids: tuple[int, ...], n: int = 16) -> list[int]:
    return list((await lm.generate(GenerationRequest(ids, n, GREEDY)).collect()).token_ids)


def decoder(lm: LanguageModel) -> Decoder:
    runner = lm.engine.runner
    assert isinstance(runner, Decoder)
    return runner


async def test_a_shared_system_prompt_is_reused_and_the_tokens_stay_the_same(
        cached_model: LanguageModel, served_model: LanguageModel) -> None:
    prompts = chats(cached_model)
    expected = [await greedy(served_model, ids) for ids in prompts]
    cache = decoder(cached_model).prefix
    assert cache is not None
    got = [await greedy(cached_model, ids) for ids in prompts]
    assert got == expected
    assert cache.stats.hits >= len(prompts) - 1  # the system prompt came from the cache
    shared = next(i for i, column in enumerate(zip(*prompts, strict=False)) if len(set(column)) > 1)
    assert shared >= 2 * BLOCK
    assert cache.stats.reused_tokens >= (len(prompts) - 1) * (shared // BLOCK * BLOCK)
    assert cache.stats.evicted_blocks > 0 and cache.bytes <= cache.budget_bytes
    # a follow-up turn reuses the first turn's prompt and answer too
    first = cached_model.chat_prompt([SYSTEM, Message("user", QUESTIONS[0])])
    answer = cached_model.tokenizer.decode(got[0])
    follow = cached_model.encode(first + answer + "\n<|im_start|>user\nAnd of Italy?")
    reused = cache.stats.reused_tokens
    assert await greedy(cached_model, follow) == await greedy(served_model, follow)
    assert cache.stats.reused_tokens - reused >= len(prompts[0]) // BLOCK * BLOCK


async def test_seeded_sampling_is_the_same_with_the_prompt_cached(
        cached_model: LanguageModel, served_model: LanguageModel) -> None:
    ids = cached_model.encode("Once upon a time")
    sampled = SamplingParams(temperature=1.0, seed=5)
    expected = (await served_model.generate(GenerationRequest(ids, 12, sampled)).collect())
    for _ in range(2):  # read, then restored
        got = await cached_model.generate(GenerationRequest(ids, 12, sampled)).collect()
        assert got.token_ids == expected.token_ids


async def test_chunked_prefills_beside_decoding_streams_give_the_same_tokens(
        cached_model: LanguageModel, served_model: LanguageModel) -> None:
    prompts = [*chats(cached_model), cached_model.encode("The three primary colors are")]
    expected = [await greedy(served_model, ids, 12) for ids in prompts]
    decoder(cached_model).prefix.clear()  # type: ignore[union-attr]
    got = await asyncio.gather(*(greedy(cached_model, ids, 12) for ids in prompts))
    assert list(got) == expected


def test_a_restored_prefix_gives_the_logits_of_a_full_prefill(
        cached_model: LanguageModel) -> None:
    d = decoder(cached_model)
    cached_model.engine.close()  # the test drives the decoder itself from here on
    ids = chats(cached_model)[1]
    full = d.prefill(0, ids).copy()
    d.remember(0, ids)
    start, ready = d.restore(1, ids)
    assert ready is None and start == len(ids) - 2  # all of it; two read again for logits
    again = d.prefill(1, ids[start:], start=start)
    np.testing.assert_array_equal(again, full)  # bit for bit
    d.remember(1, ids, again)  # now with its logits: nothing to prefill
    start, ready = d.restore(1, ids)
    assert start == len(ids) and ready is not None
    np.testing.assert_array_equal(ready, full)
    longer = (*ids, *cached_model.encode(" And why is the sea blue?"))
    full = d.prefill(2, longer).copy()
    start, ready = d.restore(3, longer)
    assert ready is None
    assert start == len(ids)  # the prompt's full blocks and its partial tail
    part = d.prefill(3, longer[start:], start=start)
    np.testing.assert_array_equal(part, full)
    steps = d.decode([7] * 4, [len(ids), len(ids), len(longer), len(longer)])
    np.testing.assert_array_equal(steps[0], steps[1])  # and so the next step's too
    np.testing.assert_array_equal(steps[2], steps[3])
