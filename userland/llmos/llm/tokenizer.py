"""The tokenizer (the only ``tokenizers`` import of llm/), built from the pack's tokenizer.json."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer as _HFTokenizer

from llmos.errors import ModelLoadError


class Tokenizer:
    """Text <-> token ids. Special tokens written in text (chat markup) are recognised."""

    def __init__(self, tokenizer_json: bytes | memoryview) -> None:
        try:
            self._tok = _HFTokenizer.from_str(bytes(tokenizer_json).decode("utf-8"))
        except Exception as exc:  # the library raises plain Exceptions
            raise ModelLoadError(f"tokenizer.json does not load: {exc}",
                                 "repack the model with a valid tokenizer.json") from exc
        self._tok.no_padding()
        self._tok.no_truncation()

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def to_json(self) -> str:
        """The tokenizer.json it was built from (for the grammar and logprob tables)."""
        return str(self._tok.to_str())

    def token_id(self, token: str) -> int | None:
        found = self._tok.token_to_id(token)
        return None if found is None else int(found)
