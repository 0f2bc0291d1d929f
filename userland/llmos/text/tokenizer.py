"""The tokenizer adapter: the only module that imports Hugging Face ``tokenizers``.

A pack carries its ``tokenizer.json``. ``Tokenizer`` turns text into token ids and back
(the causal LMs; special tokens written in text, the chat markup, are recognised);
``TextTokenizer`` turns a batch of strings into ``input_ids`` and ``attention_mask`` (int64,
padded to the longest, truncated to ``max_length``), the way sentence-transformers feeds an
encoder (the embedding models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer as _HFTokenizer

from llmos.errors import ModelLoadError

_PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>")


def _load(data: bytes | memoryview) -> _HFTokenizer:
    try:
        return _HFTokenizer.from_str(bytes(data).decode("utf-8"))
    except Exception as exc:  # tokenizers raises plain Exceptions; bad UTF-8 too
        raise ModelLoadError(f"the pack's tokenizer.json does not load: {exc}",
                             "pack the model again with a valid tokenizer.json") from exc


class Tokenizer:
    """Text <-> token ids. Special tokens written in text (chat markup) are recognised."""

    def __init__(self, tokenizer_json: bytes | memoryview) -> None:
        self._tok = _load(tokenizer_json)
        self._tok.no_padding()
        self._tok.no_truncation()

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """The special tokens' texts (``<|im_start|>``...): chat markup, not content."""
        added = self._tok.get_added_tokens_decoder().values()
        return tuple(sorted(t.content for t in added if t.special and t.content))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_id(self, token: str) -> int | None:
        found = self._tok.token_to_id(token)
        return None if found is None else int(found)

    def to_json(self) -> str:
        """The tokenizer.json it was built from (for the grammar and logprob tables)."""
        return str(self._tok.to_str())


@dataclass(frozen=True)
class Encoded:
    """A tokenized batch: both arrays int64 [batch, longest]."""

    input_ids: np.ndarray
    attention_mask: np.ndarray


class TextTokenizer:
    """Batch encoder over one ``tokenizer.json``."""

    def __init__(self, tokenizer: _HFTokenizer, max_length: int) -> None:
        self._tok = tokenizer
        self.max_length = max_length

    @classmethod
    def from_json(cls, data: bytes | memoryview, max_length: int) -> TextTokenizer:
        tok = _load(data)
        padding = tok.padding or {}
        pad_id, pad_token = padding.get("pad_id"), padding.get("pad_token")
        if pad_token is None:
            pad_token = next((t for t in _PAD_TOKENS if tok.token_to_id(t) is not None), None)
            pad_id = None if pad_token is None else tok.token_to_id(pad_token)
        if pad_token is None or pad_id is None:
            raise ModelLoadError("the pack's tokenizer has no padding token",
                                 "set a padding token in tokenizer.json before packing")
        tok.enable_padding(pad_id=pad_id, pad_token=pad_token,
                           pad_type_id=padding.get("pad_type_id", 0))  # to the longest
        tok.enable_truncation(max_length=max_length)
        return cls(tok, max_length)

    def encode_batch(self, texts: Sequence[str]) -> Encoded:
        if not texts:
            empty = np.zeros((0, 0), dtype=np.int64)
            return Encoded(empty, empty)
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return Encoded(ids, mask)
