"""``pack_onnx``: round trip through the container into a runtime, reproducibility,
quantisation options, external-data inputs, and the graph/weights split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from llmos.errors import ConfigError, ModelLoadError
from llmos.pack import container
from llmos.pack.manifest import TensorSpec
from llmos.pack.packer import PackSpec, pack_onnx
from llmos.pack.weights import WeightTable
from llmos.runtimes.base import RuntimeOptions
from llmos.runtimes.loader import load_runtime

from .models import OUT, mlp_model, mlp_reference, mlp_weights, save, unpack

X = np.random.default_rng(7).standard_normal((5, 64)).astype(np.float32)


def test_round_trip_serves_what_the_model_computes(mlp_file: Path) -> None:
    built = pack_onnx(mlp_file, PackSpec("mlp", version="3", source="tiny mlp"))
    manifest, files = unpack(built.blob)
    assert manifest == built.manifest
    assert (manifest.name, manifest.version, manifest.kind, manifest.runtime) == \
        ("mlp", "3", "tensor", "onnx")
    assert manifest.inputs == (TensorSpec("x", "FP32", (-1, 64)),)
    assert manifest.outputs == (TensorSpec("y", "FP32", (-1, OUT)),)
    assert manifest.quantization == "none"
    assert manifest.extra["size_source"] == mlp_model().ByteSize()
    sizes = sum(len(v) for v in files.values())
    assert sizes <= manifest.size_plain < sizes + 64 * len(files)  # files, 64-byte aligned
    assert manifest.size_packed == len(container.decode(built.blob)[1])
    runtime = load_runtime(manifest, files, RuntimeOptions())
    assert runtime.batchable
    y = runtime.infer({"x": X})["y"]
    np.testing.assert_allclose(y, mlp_reference(X, mlp_weights()), rtol=1e-5, atol=1e-5)
    runtime.close()


def test_large_initializers_leave_the_graph(mlp_file: Path) -> None:
    manifest, files = unpack(pack_onnx(mlp_file, PackSpec("mlp")).blob)
    table = WeightTable.from_extra(manifest.extra)
    assert table is not None and table.file == "weights.bin"
    assert {e.name for e in table.entries} == {"w1", "w2"}  # b1 (384 bytes) stays inline
    graph = onnx.load_from_string(bytes(files["model.onnx"]))
    external = {t.name for t in graph.graph.initializer
                if t.data_location == onnx.TensorProto.EXTERNAL}
    assert external == {"w1", "w2"}
    assert len(files["model.onnx"]) < 2000  # the weights are not in the graph any more
    w = mlp_weights()
    entry = {e.name: e for e in table.entries}["w2"]
    stored = np.frombuffer(files["weights.bin"], np.float32, count=w["w2"].size,
                           offset=entry.offset).reshape(w["w2"].shape)
    np.testing.assert_array_equal(stored, w["w2"])


def test_graph_and_weights_unpacked_side_by_side_are_a_plain_onnx_model(
        mlp_file: Path, tmp_path: Path) -> None:
    _, files = unpack(pack_onnx(mlp_file, PackSpec("mlp")).blob)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    np.testing.assert_allclose(session.run(None, {"x": X})[0],
                               mlp_reference(X, mlp_weights()), rtol=1e-5, atol=1e-5)


def test_packing_is_reproducible(mlp_file: Path, tmp_path: Path) -> None:
    first = pack_onnx(mlp_file, PackSpec("mlp")).blob
    again = pack_onnx(save(mlp_model(), tmp_path / "copy.onnx"), PackSpec("mlp")).blob
    assert first == again
    assert pack_onnx(mlp_file, PackSpec("mlp", version="2")).blob != first


def test_int8_reproducible_too(mlp_file: Path) -> None:
    spec = PackSpec("mlp", quantization="int8")
    assert pack_onnx(mlp_file, spec).blob == pack_onnx(mlp_file, spec).blob


@pytest.mark.parametrize("quantization, weight_dtypes, tolerance", [
    ("int8", {"int8"}, 0.15), ("fp16", {"float16"}, 0.005)])
def test_quantization_changes_the_manifest_and_still_infers(
        mlp_file: Path, quantization: str, weight_dtypes: set[str], tolerance: float) -> None:
    plain = pack_onnx(mlp_file, PackSpec("mlp")).manifest
    manifest, files = unpack(pack_onnx(mlp_file, PackSpec("mlp", quantization=quantization)
                                       ).blob)
    assert manifest.quantization == quantization
    assert manifest.size_plain < 0.6 * plain.size_plain
    table = WeightTable.from_extra(manifest.extra)
    assert table is not None
    assert weight_dtypes <= {e.dtype for e in table.entries}
    assert manifest.inputs == plain.inputs and manifest.outputs == plain.outputs
    y = load_runtime(manifest, files, RuntimeOptions()).infer({"x": X})["y"]
    expected = mlp_reference(X, mlp_weights())
    assert y.dtype == np.float32
    rel = np.linalg.norm(y - expected) / np.linalg.norm(expected)
    assert 0 < rel < tolerance


def test_int8_can_keep_matmuls_after_an_op_in_float(mlp_file: Path) -> None:
    manifest = pack_onnx(mlp_file, PackSpec("mlp", quantization="int8",
                                            keep_float_after=("Relu",))).manifest
    assert manifest.extra["int8"]["kept_float_nodes"] == 1  # mm2 reads relu's output
    table = WeightTable.from_extra(manifest.extra)
    assert table is not None
    assert {e.name for e in table.entries if e.dtype == "float32"} == {"w2"}


def test_model_with_external_data(tmp_path: Path) -> None:
    model = mlp_model()
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 30_000
    manifest, files = unpack(pack_onnx(path, PackSpec("ext")).blob)
    y = load_runtime(manifest, files, RuntimeOptions()).infer({"x": X})["y"]
    np.testing.assert_allclose(y, mlp_reference(X, mlp_weights()), rtol=1e-5, atol=1e-5)


def test_fixed_batch_is_not_batchable(tmp_path: Path) -> None:
    path = save(mlp_model(batch=2), tmp_path / "fixed.onnx")
    manifest, files = unpack(pack_onnx(path, PackSpec("fixed")).blob)
    assert manifest.inputs[0].shape == (2, 64)
    runtime = load_runtime(manifest, files, RuntimeOptions())
    assert not runtime.batchable
    assert runtime.infer({"x": X[:2]})["y"].shape == (2, OUT)


@pytest.mark.parametrize("spec, match", [
    (PackSpec("bad name!"), "not allowed"),
    (PackSpec("m", kind="vision"), "unknown kind"),
    (PackSpec("m", quantization="int3"), "unknown quantization"),
    (PackSpec("m", kind="embedding"), "needs the model's tokenizer"),
])
def test_bad_specs_are_refused(mlp_file: Path, spec: PackSpec, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        pack_onnx(mlp_file, spec)


def test_unreadable_model(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 this is not a protobuf \xff\xff")
    with pytest.raises(ModelLoadError, match="cannot read ONNX model"):
        pack_onnx(junk, PackSpec("junk"))


def test_a_tensor_model_is_not_an_embedding_model(mlp_file: Path, tmp_path: Path) -> None:
    tokenizer = tmp_path / "tokenizer.json"
    from .models import tokenizer_json

    tokenizer.write_bytes(tokenizer_json())
    with pytest.raises(ModelLoadError, match="does not fit the embedding kind"):
        pack_onnx(mlp_file, PackSpec("m", kind="embedding", tokenizer=tokenizer))


def test_large_constant_nodes_move_to_the_weights_file(tmp_path: Path) -> None:
    w = mlp_weights()["w1"]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Constant", [], ["w"], name="const",
                               value=onnx.numpy_helper.from_array(w, "w")),
         onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "c",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 64])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 96])])
    path = save(onnx.helper.make_model(graph, opset_imports=[
        onnx.helper.make_opsetid("", 17)], ir_version=8), tmp_path / "const.onnx")
    manifest, files = unpack(pack_onnx(path, PackSpec("const")).blob)
    table = WeightTable.from_extra(manifest.extra)
    assert table is not None and [e.name for e in table.entries] == ["w"]
    y = load_runtime(manifest, files, RuntimeOptions()).infer({"x": X})["y"]
    np.testing.assert_allclose(y, X @ w, rtol=1e-5, atol=1e-5)
