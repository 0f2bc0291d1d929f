"""The served SmolLM2 pack answers as the float32 model does (bench/llm_agreement.py):
the committed bench result, a live check on a quarter of the prompts, and the matching
rule itself."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from bench import llm_agreement as agreement

from llmos.demo import smollm2
from llmos.llm.model import LanguageModel

from .conftest import PackPath, load


def test_first_sentences_are_compared_normalised() -> None:
    assert agreement.first_sentence("\nThe capital is Paris. It is big.\nMore") == \
        "The capital is Paris."
    assert agreement.first_sentence("Water boils at 100.0 degrees Celsius") == \
        "Water boils at 100.0 degrees Celsius"
    assert agreement.answers_match("the capital of  France is Paris!", "The capital of France "
                                   "is Paris. It lies on the Seine.")
    assert not agreement.answers_match("L'Étoile, la France.", "The capital of France is Paris.")
    assert agreement.same_prefix((1, 2, 3), (1, 2, 3, 4), 3)
    assert not agreement.same_prefix((1, 2, 4), (1, 2, 3), 3)


def test_the_prompt_set_is_fixed_and_mixed() -> None:
    prompts = agreement.load_prompts()
    assert len(prompts) >= 30 and len(set(prompts)) == len(prompts)
    assert sum(p.startswith("What is") for p in prompts) >= 5
    assert sum(p.startswith("Name") for p in prompts) >= 5
    assert "What is the capital of France?" in prompts


def test_committed_result_serves_the_smallest_agreeing_variant() -> None:
    """bench/results/llm_agreement.json is of this prompt set and this served method, and
    that method is the smallest in memory at the threshold."""
    result = json.loads(agreement.RESULTS.read_text())
    assert result["prompts_digest"] == agreement.prompts_digest()
    assert result["served"] == smollm2.SERVED == smollm2.BUILDER.quantization
    rows = {r["method"]: r for r in result["rows"]}
    served = rows[smollm2.SERVED]
    assert served["agreement"] >= agreement.THRESHOLD, served
    assert result["smallest_agreeing"] == smollm2.SERVED
    smaller = [r for r in result["rows"] if r["resident"] < served["resident"]
               and r["method"] != "none" and not r["label"].startswith("diagnostic")]
    assert all(r["agreement"] < agreement.THRESHOLD for r in smaller), smaller


@pytest.fixture(scope="module")
def fp32_and_served(llm_pack: PackPath) -> Iterator[tuple[LanguageModel, LanguageModel]]:
    fp32, served = load(llm_pack("smollm2-fp32")), load(llm_pack("smollm2"))
    yield fp32, served
    fp32.close()
    served.close()


async def test_served_pack_agrees_with_float32_live(
        fp32_and_served: tuple[LanguageModel, LanguageModel]) -> None:
    """Every fourth prompt, answered now by both packs: at least 90 % agree."""
    fp32, served = fp32_and_served
    prompts = agreement.load_prompts()[::4]
    expected = await agreement.answer_all(fp32, prompts)
    got = await agreement.answer_all(served, prompts)
    agree = [agreement.answers_match(g.text, e.text) for g, e in zip(got, expected, strict=True)]
    misses = [(p, g.text, e.text) for p, g, e, ok in zip(prompts, got, expected, agree,
                                                          strict=True) if not ok]
    assert sum(agree) >= agreement.THRESHOLD * len(prompts), misses
