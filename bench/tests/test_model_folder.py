from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.model_folder import ModelFolderError, find_reference, same_weights
from llmos.pack.manifest import FileEntry, Manifest, TensorSpec
from llmos.pack.weights import concatenate, plan


def _onnx(path: Path, weight: np.ndarray) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(weight, "w")])
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                    ir_version=8)
    onnx.save(model_proto, str(path))
    return path


def _pack(weight: np.ndarray) -> tuple[Manifest, dict[str, memoryview]]:
    table = plan([("w", "float32", weight.shape)])
    blob = concatenate(table, {"w": weight.tobytes()})
    manifest = Manifest(
        name="m", version="1", kind="tensor", runtime="onnx",
        inputs=(TensorSpec("x", "FP32", (1, 4)),), outputs=(TensorSpec("y", "FP32", (1, 4)),),
        files=(FileEntry("model.onnx", 1, "0" * 64), FileEntry("weights.bin", len(blob), "")),
        sha256="0" * 64, size_plain=1, size_packed=1, extra={"weights": table.to_extra()})
    return manifest, {"model.onnx": memoryview(b""), "weights.bin": memoryview(blob)}


def test_the_reference_is_the_file_with_the_packs_weights(tmp_path: Path) -> None:
    weight = np.arange(16, dtype=np.float32).reshape(4, 4)
    other = _onnx(tmp_path / "a-other.onnx", weight + 1)
    right = _onnx(tmp_path / "b-right.onnx", weight)
    manifest, files = _pack(weight)
    assert find_reference([other, right], manifest, files) == right
    with pytest.raises(ModelFolderError):
        find_reference([other], manifest, files)


def test_same_weights_needs_equal_values_shapes_and_dtypes() -> None:
    w = np.ones((2, 2), dtype=np.float32)
    assert same_weights({"w": w}, {"w": w.copy(), "extra": w})
    assert not same_weights({"w": w}, {"w": w * 2})
    assert not same_weights({"w": w}, {"w": w.reshape(4)})
    assert not same_weights({"w": w}, {"w": w.astype(np.float64)})
    assert not same_weights({"w": w}, {})
    assert not same_weights({}, {"w": w})  # nothing to compare proves nothing
