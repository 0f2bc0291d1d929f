"""The shape of a decoder-only transformer, read from a Hugging Face ``config.json`` (pure).

Only the Llama family is exported (Llama, SmolLM, Mistral without sliding windows, and
Qwen2-style attention biases): RMSNorm, rotary positions, grouped-query attention and a
gated SiLU MLP. Anything else is refused with a hint rather than exported wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from llmos.errors import ModelLoadError

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")

# The graph's interface (see llmos.pack.llm.onnx_graph for what each input means).
INPUT_IDS = "input_ids"
POSITION_IDS = "position_ids"
SEQLENS_K = "seqlens_k"
TOTAL_SEQUENCE_LENGTH = "total_sequence_length"
LOGITS_TO_KEEP = "logits_to_keep"
LOGITS = "logits"


def past_names(layer: int) -> tuple[str, str]:
    """Graph inputs holding a layer's cached keys and values."""
    return f"past_key_values.{layer}.key", f"past_key_values.{layer}.value"


def present_names(layer: int) -> tuple[str, str]:
    """Graph outputs of a layer's keys and values (bound to the same buffers as the inputs)."""
    return f"present.{layer}.key", f"present.{layer}.value"


@dataclass(frozen=True)
class DecoderSpec:
    """Everything the graph builder and the engine need to know about the network."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_positions: int
    tie_word_embeddings: bool
    attention_bias: bool

    @property
    def kv_bytes_per_token(self) -> int:
        """fp32 bytes of keys and values that one token adds to the cache (all layers)."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DecoderSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _rope_theta(config: Mapping[str, Any]) -> float:
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ("default", None):
        raise ModelLoadError(
            f"rotary scaling {rope_type!r} is not supported by the exporter",
            "export a model with plain rotary positions (rope_type 'default')")
    return float(params.get("rope_theta", config.get("rope_theta", 10000.0)))


def spec_from_config(config: Mapping[str, Any]) -> DecoderSpec:
    """Validate a Hugging Face config dict and extract the decoder's shape."""
    model_type = str(config.get("model_type", ""))
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(
            f"model type {model_type!r} cannot be exported as a causal LM",
            f"supported model types: {', '.join(SUPPORTED_MODEL_TYPES)}")
    if config.get("sliding_window") and config.get("use_sliding_window", True) \
            and model_type == "mistral":
        raise ModelLoadError("sliding-window attention is not supported by the exporter",
                             "export a model without sliding_window")
    if config.get("hidden_act", "silu") != "silu":
        raise ModelLoadError(f"activation {config.get('hidden_act')!r} is not supported",
                             "the exporter builds gated SiLU MLPs only")
    try:
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        return DecoderSpec(
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(config["intermediate_size"]),
            num_layers=int(config["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=_rope_theta(config),
            max_positions=int(config.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            attention_bias=bool(config.get("attention_bias", model_type == "qwen2")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"config.json lacks or mangles a field: {exc!r}",
                             "pass a complete Hugging Face config.json") from exc
