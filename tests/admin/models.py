"""A small real ONNX model, packed and sealed in memory, for the admin console's tests."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llmos.pack import container
from llmos.pack.manifest import Manifest, TensorSpec
from llmos.vault.kek import Kek
from llmos.vault.sealed import seal


def scaler_onnx(factor: float = 2.0, width: int = 4) -> bytes:
    """y = x * factor, x and y FP32 [-1, width]."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])], "scaler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(np.full((width,), factor, np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def sealed_scaler(name: str, kek: Kek, version: str = "1", width: int = 4,
                  factor: float = 2.0, onnx_bytes: bytes | None = None) -> bytes:
    """``onnx_bytes``: another model file in the pack (one that does not load, say)."""
    model = scaler_onnx(factor, width) if onnx_bytes is None else onnx_bytes
    entries, payload = container.build_payload({"model.onnx": model})
    compressed = container.compress(payload, level=3)
    manifest = Manifest(
        name=name, version=version, kind="tensor", runtime="onnx",
        inputs=(TensorSpec("x", "FP32", (-1, width)),),
        outputs=(TensorSpec("y", "FP32", (-1, width)),), files=entries,
        sha256=hashlib.sha256(payload).hexdigest(), size_plain=len(payload),
        size_packed=len(compressed))
    return seal(manifest, compressed, kek, chunk_size=4096)
