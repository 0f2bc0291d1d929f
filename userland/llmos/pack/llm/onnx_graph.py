"""Builds the ONNX decoder graph with a batch-friendly KV cache (the only ``onnx`` import of llm/).

The graph follows ONNX Runtime's fused decoder operators, so one session serves prefill
and batched decode of sequences of different lengths without re-copying caches:

inputs
    ``input_ids``            int64 [batch, seq]
    ``position_ids``         int64 [batch, seq]   rotary positions of the new tokens
    ``seqlens_k``            int32 [batch]        total tokens per row (past + new) minus one
    ``total_sequence_length`` int32 []            the largest total of the batch
    ``logits_to_keep``       int64 [1]            logits are computed for the last K positions
    ``past_key_values.{i}.key|value`` fp32 [batch, kv_heads, cache_len, head_dim]
outputs
    ``logits``               fp32 [batch, K, vocab]
    ``present.{i}.key|value`` fp32 [batch, kv_heads, cache_len, head_dim]

When ``past`` and ``present`` are bound to the same buffer (one preallocated cache per
slot), GroupQueryAttention appends only the new tokens in place; each row attends to its
own ``seqlens_k + 1`` keys, so rows of different lengths share one decode step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llmos.pack.llm.architecture import (
    INPUT_IDS,
    LOGITS,
    LOGITS_TO_KEEP,
    POSITION_IDS,
    SEQLENS_K,
    TOTAL_SEQUENCE_LENGTH,
    DecoderSpec,
    past_names,
    present_names,
)

OPSET = 21
MS_DOMAIN = "com.microsoft"


def rotary_tables(spec: DecoderSpec) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin caches [max_positions, head_dim / 2] (non-interleaved rotary)."""
    half = spec.head_dim // 2
    inv_freq = 1.0 / (spec.rope_theta ** (np.arange(0, half, dtype=np.float64) * 2 / spec.head_dim))
    angles = np.outer(np.arange(spec.max_positions, dtype=np.float64), inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


class _Builder:
    """Accumulates nodes and initializers; names are unique by construction."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str,
           domain: str = "", **attrs: Any) -> list[str]:
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name,
                                           domain=domain, **attrs))
        return list(outputs)


def _t(w: np.ndarray) -> np.ndarray:
    """A torch Linear weight [out, in] as a MatMul right operand [in, out]."""
    return np.ascontiguousarray(np.asarray(w, dtype=np.float32).T)


def _linear(b: _Builder, x: str, weight: np.ndarray, bias: np.ndarray | None, name: str) -> str:
    (y,) = b.op("MatMul", [x, b.const(f"{name}.weight", weight)], [f"{name}/out"], name)
    if bias is None:
        return y
    (z,) = b.op("Add", [y, b.const(f"{name}.bias", bias.astype(np.float32))], [f"{name}/biased"],
                f"{name}/bias")
    return z


def _norm_weight(weights: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    return np.asarray(weights[key], dtype=np.float32)


def build_decoder(spec: DecoderSpec, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The decoder as an ONNX model; ``weights`` uses Hugging Face state-dict names."""
    b = _Builder()
    eps = spec.rms_norm_eps
    cos, sin = rotary_tables(spec)
    b.const("rotary.cos", cos)
    b.const("rotary.sin", sin)
    embed = np.asarray(weights["model.embed_tokens.weight"], dtype=np.float32)
    b.const("embed_tokens.weight", embed)
    (hidden,) = b.op("Gather", ["embed_tokens.weight", INPUT_IDS], ["embed/out"], "embed")
    first_norm = _norm_weight(weights, "model.layers.0.input_layernorm.weight")
    (normed,) = b.op("SimplifiedLayerNormalization",
                     [hidden, b.const("layers.0.input_norm.weight", first_norm)],
                     ["layers.0.input_norm/out"], "layers.0.input_norm", axis=-1, epsilon=eps)
    residual = hidden
    q_size = spec.num_heads * spec.head_dim
    kv_size = spec.num_kv_heads * spec.head_dim
    for i in range(spec.num_layers):
        p = f"model.layers.{i}."
        att = p + "self_attn."
        qkv_w = np.concatenate([weights[att + "q_proj.weight"], weights[att + "k_proj.weight"],
                                weights[att + "v_proj.weight"]], axis=0)
        qkv_b = (np.concatenate([weights[att + "q_proj.bias"], weights[att + "k_proj.bias"],
                                 weights[att + "v_proj.bias"]]) if spec.attention_bias else None)
        qkv = _linear(b, normed, _t(qkv_w), qkv_b, f"layers.{i}.qkv_proj")
        pk, pv = past_names(i)
        ok, ov = present_names(i)
        (attn, _, _) = b.op(
            "GroupQueryAttention",
            [qkv, "", "", pk, pv, SEQLENS_K, TOTAL_SEQUENCE_LENGTH, "rotary.cos", "rotary.sin",
             POSITION_IDS],
            [f"layers.{i}.attn/out", ok, ov], f"layers.{i}.attn", domain=MS_DOMAIN,
            num_heads=spec.num_heads, kv_num_heads=spec.num_kv_heads, do_rotary=1,
            rotary_interleaved=0, local_window_size=-1)
        assert q_size + 2 * kv_size == qkv_w.shape[0]
        o_bias = weights.get(att + "o_proj.bias")
        attn_out = _linear(b, attn, _t(weights[att + "o_proj.weight"]), o_bias,
                           f"layers.{i}.o_proj")
        post = b.const(f"layers.{i}.post_norm.weight",
                       _norm_weight(weights, p + "post_attention_layernorm.weight"))
        (normed, _, _, residual) = b.op(
            "SkipSimplifiedLayerNormalization", [attn_out, residual, post],
            [f"layers.{i}.post_norm/out", "", "", f"layers.{i}.post_norm/sum"],
            f"layers.{i}.post_norm", domain=MS_DOMAIN, epsilon=eps)
        mlp = p + "mlp."
        gate_up = np.concatenate(
            [weights[mlp + "gate_proj.weight"], weights[mlp + "up_proj.weight"]], axis=0)
        gu = _linear(b, normed, _t(gate_up), None, f"layers.{i}.gate_up_proj")
        gate, up = b.op("Split", [gu], [f"layers.{i}.gate", f"layers.{i}.up"],
                        f"layers.{i}.split", axis=-1, num_outputs=2)
        (sig,) = b.op("Sigmoid", [gate], [f"layers.{i}.sigmoid"], f"layers.{i}.sigmoid")
        (act,) = b.op("Mul", [gate, sig], [f"layers.{i}.silu"], f"layers.{i}.silu")
        (prod,) = b.op("Mul", [act, up], [f"layers.{i}.gated"], f"layers.{i}.gated")
        mlp_out = _linear(b, prod, _t(weights[mlp + "down_proj.weight"]), None,
                          f"layers.{i}.down_proj")
        last = i == spec.num_layers - 1
        norm_key = "model.norm.weight" if last else f"model.layers.{i + 1}.input_layernorm.weight"
        norm_name = "final_norm" if last else f"layers.{i + 1}.input_norm"
        gamma = b.const(f"{norm_name}.weight", _norm_weight(weights, norm_key))
        (normed, _, _, residual) = b.op(
            "SkipSimplifiedLayerNormalization", [mlp_out, residual, gamma],
            [f"{norm_name}/out", "", "", f"{norm_name}/sum"], norm_name, domain=MS_DOMAIN,
            epsilon=eps)
    # Logits only for the last K positions: prefill needs one row, perplexity needs all.
    (neg,) = b.op("Neg", [LOGITS_TO_KEEP], ["logits_start"], "logits_start")
    (kept,) = b.op("Slice", [normed, neg, b.const("slice.end", np.array([2**62], np.int64)),
                             b.const("slice.axis", np.array([1], np.int64))],
                   ["kept_hidden"], "keep_last")
    head = weights["model.embed_tokens.weight"] if spec.tie_word_embeddings \
        else weights["lm_head.weight"]
    b.op("MatMul", [kept, b.const("lm_head.weight", _t(head))], [LOGITS], "lm_head")

    cache_shape: list[str | int] = ["batch", spec.num_kv_heads, "cache_len", spec.head_dim]
    inputs = [
        helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info(POSITION_IDS, TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info(SEQLENS_K, TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info(TOTAL_SEQUENCE_LENGTH, TensorProto.INT32, []),
        helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, [1]),
    ]
    outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT,
                                             ["batch", "kept", spec.vocab_size])]
    for i in range(spec.num_layers):
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, cache_shape)
                   for n in past_names(i)]
        outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, cache_shape)
                    for n in present_names(i)]
    graph = helper.make_graph(b.nodes, "decoder", inputs, outputs, b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid(MS_DOMAIN, 1)],
                              producer_name="llmos")
    model.ir_version = 10
    return model


def save(model: onnx.ModelProto, path: Path) -> None:
    """Write a model with its weights in one external-data file next to it.

    onnx moves the weights out of ``model`` while saving: load it again to use it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)


def load(path: Path) -> onnx.ModelProto:
    return onnx.load_model(str(path), load_external_data=True)
