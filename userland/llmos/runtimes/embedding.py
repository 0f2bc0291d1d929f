"""The ``embedding`` kind at run time: text in, one L2-normalised vector per text out.

This module tokenizes, runs the pack's ``Encoder`` (the runtimes supply it) and checks its
answer; the format (signature, manifest extra) is ``llmos.pack.embedding``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from llmos.errors import BadRequestError, ModelLoadError
from llmos.pack.embedding import EMBEDDING, TEXT, public_inputs, public_outputs
from llmos.runtimes.validation import Signed, conform
from llmos.text.tokenizer import TextTokenizer

# (input_ids, attention_mask) -> [batch, dim] float32
Encoder = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _text(index: int, value: object) -> str:
    if isinstance(value, bytes | bytearray | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequestError(f"input {TEXT!r}: element {index} is not valid UTF-8",
                                  "send text as UTF-8 strings") from None
    if isinstance(value, str):
        return value
    raise BadRequestError(f"input {TEXT!r}: element {index} is a {type(value).__name__}, "
                          "not a string", "send BYTES elements (strings)")


class EmbeddingRuntime(Signed):
    """A Runtime for embedding packs, over any encoder (batchable: texts [-1] in,
    embeddings [-1, dim] out)."""

    def __init__(self, tokenizer: TextTokenizer, encode: Encoder, dim: int,
                 release: Callable[[], None]) -> None:
        self._tokenizer = tokenizer
        self._encode = encode
        self._dim = dim
        self._release = release
        self._inputs = public_inputs()
        self._outputs = public_outputs(dim)

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [_text(i, v) for i, v in enumerate(conform(self._inputs, inputs)[TEXT])]
        if not texts:
            return {EMBEDDING: np.zeros((0, self._dim), dtype=np.float32)}
        batch = self._tokenizer.encode_batch(texts)
        out = np.asarray(self._encode(batch.input_ids, batch.attention_mask), dtype=np.float32)
        if out.shape != (len(texts), self._dim):
            raise ModelLoadError(f"the embedding model returned shape {list(out.shape)}, "
                                 f"expected [{len(texts)}, {self._dim}]",
                                 "the pack's model does not fit its manifest; pack it again")
        return {EMBEDDING: out}

    def count_tokens(self, texts: Sequence[str]) -> int:
        """The tokens the model sees for ``texts``: special tokens in, truncation applied."""
        return int(self._tokenizer.encode_batch(texts).attention_mask.sum())

    def close(self) -> None:
        self._release()
