"""The ``embedding`` kind: text in, one L2-normalised vector per text out.

The public signature is the same whatever runs the model: input ``text`` BYTES [-1]
(UTF-8 strings), output ``embedding`` FP32 [-1, dim]. Inside the pack, the graph (ONNX) or
module (TorchScript) takes int64 ``input_ids`` and ``attention_mask`` [batch, sequence]
(an ONNX graph may also take ``token_type_ids``, fed zeros) and returns [batch, dim] with
the pooling and the normalisation already done. This module tokenizes, runs that
``Encoder`` and checks its answer; the runtimes only supply the encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmos.errors import BadRequestError, ModelLoadError, PackFormatError
from llmos.pack.manifest import Manifest, TensorSpec
from llmos.runtimes.validation import Signed, conform
from llmos.text.tokenizer import TextTokenizer

TEXT = "text"
EMBEDDING = "embedding"
EXTRA_KEY = "embedding"
ENCODER_INPUTS = ("input_ids", "attention_mask")  # in this order (TorchScript: positional)
OPTIONAL_INPUTS = ("token_type_ids",)  # ONNX only: fed zeros when the graph wants it

# (input_ids, attention_mask) -> [batch, dim] float32
Encoder = Callable[[np.ndarray, np.ndarray], np.ndarray]


def public_inputs() -> tuple[TensorSpec, ...]:
    return (TensorSpec(TEXT, "BYTES", (-1,)),)


def public_outputs(dim: int) -> tuple[TensorSpec, ...]:
    return (TensorSpec(EMBEDDING, "FP32", (-1, dim)),)


@dataclass(frozen=True)
class EmbeddingConfig:
    """What an embedding pack adds to its manifest (``extra["embedding"]``)."""

    tokenizer: str  # file inside the pack
    max_length: int  # longest token sequence; longer texts are truncated
    dim: int

    def to_extra(self) -> dict[str, Any]:
        return {"tokenizer": self.tokenizer, "max_length": self.max_length, "dim": self.dim}

    @classmethod
    def of(cls, manifest: Manifest) -> EmbeddingConfig:
        invalid = PackFormatError(
            f"embedding pack {manifest.name!r} lacks a valid extra.{EXTRA_KEY} "
            "(tokenizer, max_length, dim)", "pack the model again with --kind embedding")
        raw = manifest.extra.get(EXTRA_KEY)
        if not isinstance(raw, Mapping):
            raise invalid
        try:
            cfg = cls(str(raw["tokenizer"]), int(raw["max_length"]), int(raw["dim"]))
        except (KeyError, TypeError, ValueError):
            raise invalid from None
        if cfg.tokenizer not in {f.name for f in manifest.files}:
            raise PackFormatError(f"embedding pack {manifest.name!r} has no {cfg.tokenizer}",
                                  "pack the model again with --tokenizer")
        return cfg


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

    def close(self) -> None:
        self._release()
