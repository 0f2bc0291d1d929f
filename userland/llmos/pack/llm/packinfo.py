"""What a causal-LM pack says about itself: ``manifest.extra["llm"]`` and its files (pure).

A ``causal-lm`` pack holds the decoder graph (and its weights file), ``tokenizer.json``,
``generation_config.json`` and, when the model has one, ``chat_template.jinja``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmos.errors import PackFormatError
from llmos.pack.llm.architecture import DecoderSpec

EXTRA_KEY = "llm"
TOKENIZER_FILE = "tokenizer.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
GENERATION_CONFIG_FILE = "generation_config.json"


def _ids(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [int(v) for v in value if isinstance(v, int)]
    return []


def eos_ids(generation_config: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[int, ...]:
    """End-of-sequence ids: the generation config's first, then the model config's."""
    found = _ids(generation_config.get("eos_token_id")) + _ids(config.get("eos_token_id"))
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class LLMInfo:
    decoder: DecoderSpec
    context_length: int  # tokens per sequence (prompt + generated)
    eos_token_ids: tuple[int, ...]
    bos_token: str | None = None
    eos_token: str | None = None
    chat_template: str | None = CHAT_TEMPLATE_FILE  # file name inside the pack, if any
    tokenizer: str = TOKENIZER_FILE
    sparsity: float = 0.0
    # Weights only MatMulNBits reads as blocks and scales: once onnxruntime has prepacked
    # them it never reads the originals again, so their pages can be released.
    prepacked: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "decoder": self.decoder.to_dict(),
            "context_length": self.context_length,
            "eos_token_ids": list(self.eos_token_ids),
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "chat_template": self.chat_template,
            "tokenizer": self.tokenizer,
            "sparsity": self.sparsity,
            "prepacked": list(self.prepacked),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LLMInfo:
        try:
            return cls(
                decoder=DecoderSpec.from_dict(d["decoder"]),
                context_length=int(d["context_length"]),
                eos_token_ids=tuple(int(i) for i in d["eos_token_ids"]),
                bos_token=d.get("bos_token"),
                eos_token=d.get("eos_token"),
                chat_template=d.get("chat_template"),
                tokenizer=str(d.get("tokenizer", TOKENIZER_FILE)),
                sparsity=float(d.get("sparsity", 0.0)),
                prepacked=tuple(str(n) for n in d.get("prepacked", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PackFormatError(f"malformed causal-lm description in the manifest: {exc!r}",
                                  "pack the model again with this version of llmos") from exc

    @classmethod
    def of(cls, extra: Mapping[str, Any]) -> LLMInfo:
        raw = extra.get(EXTRA_KEY)
        if not isinstance(raw, Mapping):
            raise PackFormatError("the manifest of this causal-lm pack has no 'llm' section",
                                  "pack the model with 'llmos pack' as a causal LM")
        return cls.from_dict(raw)
