"""Constrained decoding with llguidance over SmolLM2's real vocabulary: whatever the
logits say, the output parses and validates."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from llmos.llm.constraints import Grammar, GrammarError, Grammars
from llmos.llm.decoding import TokenChooser
from llmos.llm.sampling import SamplingParams
from llmos.llm.schema_bounds import bounded
from llmos.llm.tools import Function, ToolSpec, parse_calls, tool_grammar
from llmos.pack import container
from llmos.pack.llm.packinfo import LLMInfo
from llmos.text.tokenizer import Tokenizer

from .conftest import PackPath

SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 12},
                         "tags": {"type": "array", "items": {"enum": ["a", "b"]},
                                  "maxItems": 3},
                         "score": {"type": "number"}, "ok": {"type": "boolean"}},
          "required": ["name", "tags", "score", "ok"], "additionalProperties": False}


@pytest.fixture(scope="module")
def vocab(llm_pack: PackPath) -> tuple[Tokenizer, int]:
    manifest, compressed = container.read_pack(llm_pack("smollm2"))
    files = container.split_files(manifest, container.decompress_into([compressed], manifest))
    info = LLMInfo.of(manifest.extra)
    return Tokenizer(files[info.tokenizer]), info.eos_token_ids[0]


@pytest.fixture(scope="module")
def grammars(vocab: tuple[Tokenizer, int]) -> Grammars:
    return Grammars(vocab[0].to_json(), vocab[1])


def run(grammars: Grammars, tok: Tokenizer, eos: int, grammar: Grammar, seed: int,
        limit: int = 400) -> str:
    """Decode with random logits (a model that knows nothing) under the constraint."""
    rng = np.random.default_rng(seed)
    chooser = TokenChooser(SamplingParams(temperature=1.0, seed=seed),
                           constraint=grammars.constraint(grammar))
    ids: list[int] = []
    for _ in range(limit):
        t = chooser(rng.normal(0, 3, tok.vocab_size).astype(np.float32)).token_id
        if t == eos:
            return tok.decode(ids)
        ids.append(t)
    raise AssertionError(f"no end after {limit} tokens: {tok.decode(ids)!r}")


def test_random_logits_still_give_valid_documents(grammars: Grammars,
                                                  vocab: tuple[Tokenizer, int]) -> None:
    grammar = grammars.json_schema(SCHEMA)
    for seed in range(8):
        jsonschema.validate(json.loads(run(grammars, *vocab, grammar, seed)), SCHEMA)


def test_random_logits_still_give_valid_tool_calls(grammars: Grammars,
                                                   vocab: tuple[Tokenizer, int]) -> None:
    fns = (Function("f", "", SCHEMA), Function("g", "", {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["n"],
        "additionalProperties": False}))
    grammar = grammars.lark(tool_grammar(ToolSpec(fns, "required")))
    for seed in range(6):
        content, calls = parse_calls(run(grammars, *vocab, grammar, seed))
        assert content is None and 1 <= len(calls) <= 2
        for c in calls:
            schema = fns[0].parameters if c.name == "f" else fns[1].parameters
            jsonschema.validate(json.loads(c.arguments), schema)


def test_unenforceable_schemas_are_refused(grammars: Grammars) -> None:
    with pytest.raises(GrammarError):
        grammars.json_schema({"type": "object", "properties": {"a": {"type": "strin"}}})
    with pytest.raises(GrammarError):
        grammars.lark("start: %json {nope")


def test_bounded_free_form_objects_end_even_with_a_random_model(
        grammars: Grammars, vocab: tuple[Tokenizer, int]) -> None:
    grammar = grammars.json_schema(bounded({"type": "object"}))
    for seed in range(4):
        assert isinstance(json.loads(run(grammars, *vocab, grammar, seed, limit=6000)), dict)


def test_a_document_closes_before_its_budget_runs_out(grammars: Grammars,
                                                      vocab: tuple[Tokenizer, int]) -> None:
    tok, eos = vocab
    budget = 60
    grammar = grammars.json_schema(bounded({"type": "object"}))
    for seed in range(4):
        rng = np.random.default_rng(seed)
        chooser = TokenChooser(SamplingParams(temperature=1.0, seed=seed),
                               constraint=grammars.constraint(grammar))
        ids: list[int] = []
        for used in range(budget):
            t = chooser(rng.normal(0, 3, tok.vocab_size).astype(np.float32), budget - used)
            if t.token_id == eos:
                break
            ids.append(t.token_id)
        assert len(ids) < budget
        assert isinstance(json.loads(tok.decode(ids)), dict), tok.decode(ids)
