"""Tiny real models for the packing tests, built with onnx.helper (and torch, tokenizers)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llmos.pack import container
from llmos.pack.manifest import Manifest
from llmos.pack.packer import BuiltPack, PackSpec, pack_onnx

IN, HIDDEN, OUT = 64, 96, 32
VOCAB = ("[PAD]", "[UNK]", "red", "green", "blue", "cat", "dog", "runs", "sleeps", "fast")
DIM = 16


def mlp_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w1": rng.standard_normal((IN, HIDDEN)).astype(np.float32) / 8,
            "b1": rng.standard_normal(HIDDEN).astype(np.float32),  # small: stays in the graph
            "w2": rng.standard_normal((HIDDEN, OUT)).astype(np.float32) / 8}


def mlp_reference(x: np.ndarray, w: Mapping[str, np.ndarray]) -> np.ndarray:
    out: np.ndarray = np.maximum(x @ w["w1"] + w["b1"], 0.0) @ w["w2"]
    return out


def mlp_model(seed: int = 0, batch: int | str = "batch") -> onnx.ModelProto:
    """y = relu(x @ w1 + b1) @ w2, x FP32 [batch, 64] -> y FP32 [batch, 32]."""
    w = mlp_weights(seed)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="add1"),
             helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
             helper.make_node("MatMul", ["h2", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, IN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, OUT])],
        [numpy_helper.from_array(a, name) for name, a in w.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def embedding_table(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(VOCAB), DIM)).astype(np.float32)


def embedding_model(seed: int = 0) -> onnx.ModelProto:
    """Mean of token vectors under the mask, L2-normalised: an encoder in miniature."""
    table = embedding_table(seed)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["vectors"], name="lookup"),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT,
                         name="cast"),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"], name="unsqueeze"),
        helper.make_node("Mul", ["vectors", "mask3"], ["masked"], name="mul"),
        helper.make_node("ReduceSum", ["masked", "one"], ["summed"], keepdims=0, name="sum"),
        helper.make_node("ReduceSum", ["mask3", "one"], ["count"], keepdims=0, name="count"),
        helper.make_node("Div", ["summed", "count"], ["mean"], name="div"),
        helper.make_node("LpNormalization", ["mean"], ["pooled"], axis=1, p=2, name="norm"),
    ]
    ids = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
           for n in ("input_ids", "attention_mask")]
    graph = helper.make_graph(
        nodes, "embed", ids, [helper.make_tensor_value_info("pooled", TensorProto.FLOAT,
                                                            ["batch", DIM])],
        [numpy_helper.from_array(table, "table"),
         numpy_helper.from_array(np.array([-1], np.int64), "last"),
         numpy_helper.from_array(np.array([1], np.int64), "one")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def embedding_reference(token_ids: list[list[int]], seed: int = 0) -> np.ndarray:
    table = embedding_table(seed)
    means = np.stack([table[ids].mean(axis=0) for ids in token_ids])
    out: np.ndarray = means / np.linalg.norm(means, axis=1, keepdims=True)
    return out


def tokenizer_json() -> bytes:
    """A word-level tokenizer over VOCAB (whitespace split, lower case, [PAD] = 0)."""
    doc = {
        "version": "1.0", "truncation": None, "added_tokens": [
            {"id": 0, "content": "[PAD]", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None, "decoder": None,
        "padding": {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None,
                    "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "model": {"type": "WordLevel", "vocab": {t: i for i, t in enumerate(VOCAB)},
                  "unk_token": "[UNK]"},
    }
    return json.dumps(doc).encode()


def token_ids(text: str) -> list[int]:
    return [VOCAB.index(w) if w in VOCAB else VOCAB.index("[UNK]")
            for w in text.lower().split()]


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def unpack(blob: bytes) -> tuple[Manifest, dict[str, memoryview]]:
    """A plain pack's manifest and its files, the way the supervisor gets them."""
    manifest, compressed = container.decode(blob)
    payload = container.decompress_into([compressed], manifest)
    return manifest, container.split_files(manifest, payload)


# A builder for the demo-cache tests: the catalog imports it by dotted name.
SEED = {"value": 0}


@dataclass(frozen=True)
class TinyDemo:
    folder: Path | None = None

    def fingerprint(self) -> Mapping[str, str]:
        return {"seed": str(SEED["value"])}

    def build(self, name: str, work: Path) -> BuiltPack:
        work.mkdir(parents=True, exist_ok=True)
        model = save(mlp_model(SEED["value"]), work / f"{name}.onnx")
        return pack_onnx(model, PackSpec(name, level=3))


TINY = TinyDemo()
