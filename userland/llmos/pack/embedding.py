"""The ``embedding`` kind's pack format: its public signature and its manifest extra.

The public signature is the same whatever runs the model: input ``text`` BYTES [-1]
(UTF-8 strings), output ``embedding`` FP32 [-1, dim]. Inside the pack, the graph (ONNX) or
module (TorchScript) takes int64 ``input_ids`` and ``attention_mask`` [batch, sequence]
(an ONNX graph may also take ``token_type_ids``, fed zeros) and returns [batch, dim] with
the pooling and the normalisation already done. ``llmos.runtimes.embedding`` runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmos.errors import PackFormatError
from llmos.pack.manifest import Manifest, TensorSpec

TEXT = "text"
EMBEDDING = "embedding"
EXTRA_KEY = "embedding"
ENCODER_INPUTS = ("input_ids", "attention_mask")  # in this order (TorchScript: positional)
OPTIONAL_INPUTS = ("token_type_ids",)  # ONNX only: fed zeros when the graph wants it

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


