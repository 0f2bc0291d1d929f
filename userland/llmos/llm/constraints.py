"""Constrained decoding over the tokenizer's vocabulary (the only ``llguidance`` import).

llguidance (Microsoft's Rust grammar engine behind Guidance, also used by vLLM, SGLang and
llama.cpp) compiles a JSON schema or a Lark grammar, lazily, into a matcher that answers
for each step the set of tokens that keep the output a valid prefix; it needs nothing but
the tokenizer.json, no torch. ``Grammars`` holds one tokenizer index per model (built
once, ~0.5 s for SmolLM2's 49k tokens); ``Grammars.json_schema`` / ``Grammars.lark``
compile a request's grammar (refused with a ``BadRequestError`` naming the field); each
sequence then gets its own ``GrammarConstraint`` (``llmos.llm.decoding.TokenConstraint``)
holding a fresh matcher, so the mask of one sequence never touches another's logits.

JSON is generated compactly (``", "`` and ``": "`` between items, no free whitespace), so
a small model cannot wander off into endless blank lines inside a valid document.

Near the end of its token budget a sequence closes what it has open: once at most
``CLOSING_RESERVE`` tokens (a quarter of a smaller budget) are left, the tokens made only
of ``"``, ``}`` and ``]`` (and the end token) are the only ones allowed whenever the
grammar allows any of them, so a document the model has not finished still ends valid
instead of being cut off by ``max_tokens`` (where the grammar needs more, a required
property or a value, the model writes it as usual).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import llguidance
import numpy as np

from llmos.errors import BadRequestError, LlmosError

CLOSING_RESERVE = 24
CLOSERS = frozenset(b'"}]')
JSON_STYLE: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ",
                              "key_separator": ": "}


class GrammarError(BadRequestError):
    """The schema or grammar of a request cannot be enforced (answered 400)."""


class ConstraintError(LlmosError):
    """A grammar matcher failed while decoding (a bug of ours or of the library)."""


@dataclass(frozen=True)
class Grammar:
    """A compiled, validated grammar (llguidance's serialised form)."""

    source: str


def json_schema_grammar_text(schema: Mapping[str, Any]) -> str:
    """A schema as the body of a Lark ``%json`` rule, in the compact style."""
    return json.dumps({**schema, "x-guidance": JSON_STYLE})


class Grammars:
    """Grammar compilation for one tokenizer. Thread-safe; building the index is lazy."""

    def __init__(self, tokenizer_json: str, eos_token_id: int) -> None:
        self._json = tokenizer_json
        self._eos = eos_token_id
        self._tok: llguidance.LLTokenizer | None = None
        self._closing: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> llguidance.LLTokenizer:
        with self._lock:
            if self._tok is None:
                self._tok = llguidance.LLTokenizer(self._json, eos_token=self._eos)
            return self._tok

    @property
    def closing(self) -> np.ndarray:
        """Tokens made only of closing characters, and the end token (boolean row)."""
        tok = self.tokenizer
        with self._lock:
            if self._closing is None:
                row = np.zeros(tok.vocab_size, bool)
                for i in range(tok.vocab_size):
                    if tok.is_special_token(i):
                        continue
                    raw = tok.decode_bytes([i])
                    row[i] = bool(raw) and set(raw) <= CLOSERS
                row[self._eos] = True
                self._closing = row
            return self._closing

    def _checked(self, grammar: str) -> Grammar:
        err = llguidance.LLMatcher.validate_grammar(grammar, self.tokenizer)
        if err:
            raise GrammarError(f"cannot be enforced: {err}",
                               "use the JSON Schema subset of OpenAI's structured outputs")
        return Grammar(grammar)

    def json_schema(self, schema: Mapping[str, Any]) -> Grammar:
        """The grammar of the JSON documents that validate against ``schema``."""
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                dict(schema), overrides=JSON_STYLE)  # type: ignore[arg-type]
        except ValueError as exc:
            raise GrammarError(f"is not a valid JSON schema: {exc}",
                               "send a JSON Schema object") from None
        return self._checked(grammar)

    def lark(self, lark: str) -> Grammar:
        """A Lark grammar (llguidance's dialect, ``%json {schema}`` rules included)."""
        return self._checked(llguidance.LLMatcher.grammar_from_lark(lark))

    def constraint(self, grammar: Grammar) -> GrammarConstraint:
        return GrammarConstraint(llguidance.LLMatcher(self.tokenizer, grammar.source,
                                                      log_level=0), self.closing)


class GrammarConstraint:
    """One sequence's matcher and mask buffer (thread-confined to the engine's worker)."""

    def __init__(self, matcher: llguidance.LLMatcher, closing: np.ndarray | None = None) -> None:
        if matcher.is_error():
            raise BadRequestError(f"the grammar does not compile: {matcher.get_error()}",
                                  "check the response_format or tools schema")
        self._m = matcher
        self._words: np.ndarray | None = None
        self._closing = closing
        self._reserve: int | None = None

    def allowed(self, vocab_size: int, remaining: int | None = None) -> np.ndarray:
        mask = self._mask(vocab_size)
        if remaining is None or self._closing is None:
            return mask
        if self._reserve is None:  # the first call sees the whole budget
            self._reserve = min(CLOSING_RESERVE, remaining // 4)
        if remaining <= self._reserve:
            n = min(vocab_size, self._closing.size)
            closing = mask.copy()
            closing[:n] &= self._closing[:n]
            closing[n:] = False
            if closing.any():
                return closing
        return mask

    def _mask(self, vocab_size: int) -> np.ndarray:
        if self._words is None:
            self._words = np.zeros((vocab_size + 31) // 32, np.int32)
        words = self._words
        self._m.unsafe_compute_mask_ptr(words.ctypes.data, words.nbytes)
        if self._m.is_error():
            raise ConstraintError(f"the grammar matcher failed: {self._m.get_error()}",
                                  "report this request")
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:vocab_size]
        return bits.astype(bool)

    def advance(self, token_id: int) -> None:
        if not self._m.consume_token(token_id):
            raise ConstraintError(f"the grammar matcher refused token {token_id}: "
                                  f"{self._m.get_error()}", "report this request")

    @property
    def finished(self) -> bool:
        return bool(self._m.is_stopped())
