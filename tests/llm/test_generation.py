"""The engine on the real SmolLM2 packs: token-exact against transformers, fluent when
compressed, repeatable when seeded, and refusing prompts longer than the context."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from llmos.errors import BadRequestError
from llmos.llm.chat import Message
from llmos.llm.generation import GenerationRequest
from llmos.llm.interrupt import Interrupt, Interrupted
from llmos.llm.model import LanguageModel
from llmos.llm.sampling import SamplingParams

from .conftest import PackPath, hf_folder, load

GREEDY = SamplingParams(temperature=0.0)
NEW_TOKENS = 24
CHATS = (
    [Message("user", "What is the capital of France?")],
    [Message("system", "You answer in one sentence."),
     Message("user", "Why is the sky blue?")],
)
RAW = "The three primary colors are"


@pytest.fixture(scope="module")
def fp32_model(llm_pack: PackPath) -> Iterator[LanguageModel]:
    lm = load(llm_pack("smollm2-fp32"))
    yield lm
    lm.close()


@pytest.fixture(scope="module")
def reference(llm_pack: PackPath) -> Any:
    """transformers' tokenizer and model on the same float32 weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = hf_folder(llm_pack("smollm2-fp32"))
    torch.set_num_threads(2)
    return (AutoTokenizer.from_pretrained(str(folder)),
            AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32))


def prompts(lm: LanguageModel) -> list[tuple[int, ...]]:
    return [lm.encode(lm.chat_prompt(chat)) for chat in CHATS] + [lm.encode(RAW)]


def hf_greedy(reference: Any, ids: tuple[int, ...]) -> list[int]:
    import torch

    _, model = reference
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False,
                             attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return [int(t) for t in out[0, len(ids):]]


@pytest.fixture(scope="module")
def expected(fp32_model: LanguageModel, reference: Any) -> dict[tuple[int, ...], list[int]]:
    """transformers' greedy continuation of each prompt."""
    return {ids: hf_greedy(reference, ids) for ids in prompts(fp32_model)}


def test_chat_template_and_tokens_match_transformers(fp32_model: LanguageModel,
                                                     reference: Any) -> None:
    tokenizer, _ = reference
    for chat in CHATS:
        messages = [{"role": m.role, "content": m.content} for m in chat]
        text = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=True)
        assert fp32_model.chat_prompt(chat) == text
        assert list(fp32_model.encode(text)) == tokenizer(text, add_special_tokens=False)[
            "input_ids"]
    assert list(fp32_model.encode(RAW)) == tokenizer(RAW, add_special_tokens=False)["input_ids"]


async def test_greedy_tokens_equal_transformers_generate(
        fp32_model: LanguageModel, expected: dict[tuple[int, ...], list[int]]) -> None:
    for ids, tokens in expected.items():
        done = await fp32_model.generate(GenerationRequest(ids, NEW_TOKENS, GREEDY)).collect()
        assert list(done.token_ids) == tokens, fp32_model.tokenizer.decode(tokens)


async def test_batched_decoding_gives_the_same_tokens(
        fp32_model: LanguageModel, expected: dict[tuple[int, ...], list[int]]) -> None:
    """Prompts of different lengths decoded together (one step, several rows)."""
    done = await asyncio.gather(*(
        fp32_model.generate(GenerationRequest(p, NEW_TOKENS, GREEDY)).collect()
        for p in expected))
    for tokens, d in zip(expected.values(), done, strict=True):
        assert list(d.token_ids) == tokens


@pytest.mark.parametrize("question, answer", [
    ("What is the capital of France?", "Paris"),
    ("Name the capital of France.", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
])
async def test_served_pack_answers_plain_questions(served_model: LanguageModel,
                                                   question: str,
                                                   answer: str) -> None:
    """The served pack (int4-exact: the float32 model's answers, bench/QUALITY.md), asked
    plainly, greedy as served."""
    lm = served_model
    prompt = lm.encode(lm.chat_prompt([Message("user", question)]))
    done = await lm.generate(GenerationRequest(prompt, 30, GREEDY)).collect()
    assert answer in done.text, done.text
    assert done.finish_reason == "stop"  # it ends its answer by itself (EOS)


async def test_int4_pack_answers_fluently(llm_pack: PackPath) -> None:
    """The 4-bit pack with int8 compute is smaller and drifts from float32 (it is not
    served): it still ends a sensible answer by itself."""
    lm = load(llm_pack("smollm2-int4"))
    try:
        prompt = lm.encode(lm.chat_prompt([Message("user", "Write one sentence about the sea.")]))
        done = await lm.generate(GenerationRequest(prompt, 40, GREEDY)).collect()
    finally:
        lm.close()
    assert "sea" in done.text.lower(), done.text
    assert done.finish_reason == "stop"


async def test_seeded_sampling_repeats_itself(served_model: LanguageModel) -> None:
    ids = served_model.encode(served_model.chat_prompt([Message("user", "Tell me a story.")]))

    async def sample(seed: int) -> str:
        params = SamplingParams(temperature=1.0, top_p=0.95, seed=seed)
        return (await served_model.generate(GenerationRequest(ids, 16, params)).collect()).text

    first = await sample(11)
    assert await sample(11) == first
    assert {await sample(s) for s in (12, 13, 14)} != {first}


async def test_prompt_longer_than_the_context_is_refused(served_model: LanguageModel) -> None:
    n = served_model.context_length + 5
    with pytest.raises(BadRequestError) as info:
        served_model.generate(GenerationRequest(tuple([42] * n), 4, GREEDY))
    assert str(n) in info.value.message
    assert str(served_model.context_length) in info.value.message


async def test_a_cancelled_prefill_of_the_real_decoder_stops_in_the_run(
        served_model: LanguageModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime's terminate flag, set from the event loop while a long prompt is being
    prefilled, ends that run (Interrupted) instead of letting it read the whole prompt; the
    engine then serves the next request."""
    decoder = served_model.engine.runner
    original = decoder.prefill
    started = threading.Event()
    outcomes: list[str] = []

    def watched(slot: int, ids: Sequence[int], interrupt: Interrupt | None = None,
                start: int = 0) -> np.ndarray:
        if len(ids) > 100:
            started.set()
        try:
            row = original(slot, ids, interrupt, start)
        except Interrupted:
            outcomes.append("interrupted")
            raise
        outcomes.append("completed")
        return row

    monkeypatch.setattr(decoder, "prefill", watched)
    n = min(1800, served_model.context_length - 8)
    prompt = tuple(100 + i % 1000 for i in range(n))
    gen = served_model.generate(GenerationRequest(prompt, 4))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 60)
    gen.cancel()
    for _ in range(600):
        if outcomes:
            break
        await asyncio.sleep(0.05)
    assert outcomes == ["interrupted"]
    after = await served_model.generate(GenerationRequest((1, 2, 3), 3)).collect()
    assert after.completion_tokens == 3
