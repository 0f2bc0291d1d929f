"""Small real ONNX models, packed and sealed in memory (the plaintext never touches disk)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llmos.datatypes import V2_TO_NUMPY
from llmos.pack import container
from llmos.pack.manifest import Manifest, TensorSpec
from llmos.vault.kek import Kek
from llmos.vault.sealed import seal

OPSET = [helper.make_opsetid("", 17)]


@dataclass(frozen=True)
class Model:
    onnx: bytes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _model(graph: onnx.GraphProto) -> bytes:
    m = helper.make_model(graph, opset_imports=OPSET, ir_version=8)
    onnx.checker.check_model(m)
    return bytes(m.SerializeToString())


def affine(seed: int) -> tuple[Model, np.ndarray, np.ndarray]:
    """y = x @ w + b, x: FP32 [-1, 4] -> y: FP32 [-1, 3]; s = row sums, FP32 [-1].

    Pass a fresh seed: the weights' bytes then identify this model's plaintext uniquely.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["y"]),
        helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = Model(_model(graph), (TensorSpec("x", "FP32", (-1, 4)),),
                  (TensorSpec("y", "FP32", (-1, 3)), TensorSpec("s", "FP32", (-1,))))
    return model, w, b


def slow(seed: int, width: int = 512, depth: int = 48) -> tuple[Model, np.ndarray]:
    """``depth`` times tanh(x @ W): a few ms per row, to build up queues and deadlines."""
    w = (np.random.default_rng(seed).standard_normal((width, width)) / np.sqrt(width)
         ).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(depth):
        nodes += [helper.make_node("MatMul", [prev, "w"], [f"m{i}"]),
                  helper.make_node("Tanh", [f"m{i}"], [f"t{i}"])]
        prev = f"t{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [numpy_helper.from_array(w, "w")])
    return Model(_model(graph), (TensorSpec("x", "FP32", (-1, width)),),
                 (TensorSpec("y", "FP32", (-1, width)),)), w


# Every v2 datatype an ONNX graph can pass through (BF16 has no numpy type to serve it).
ECHO_TYPES = {
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def echo() -> Model:
    """``in_<DT>`` -> ``out_<DT>`` (Identity), [-1, -1], for every datatype in ECHO_TYPES."""
    nodes, ins, outs, specs_in, specs_out = [], [], [], [], []
    for dt, proto in ECHO_TYPES.items():
        nodes.append(helper.make_node("Identity", [f"in_{dt}"], [f"out_{dt}"]))
        ins.append(helper.make_tensor_value_info(f"in_{dt}", proto, ["batch", "n"]))
        outs.append(helper.make_tensor_value_info(f"out_{dt}", proto, ["batch", "n"]))
        specs_in.append(TensorSpec(f"in_{dt}", dt, (-1, -1)))
        specs_out.append(TensorSpec(f"out_{dt}", dt, (-1, -1)))
    graph = helper.make_graph(nodes, "echo", ins, outs)
    return Model(_model(graph), tuple(specs_in), tuple(specs_out))


def echo_inputs(rows: int = 2, cols: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """One array per datatype of the echo model, values spanning each type's range."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for dt in ECHO_TYPES:
        if dt == "BYTES":
            words = [f"w{i}é".encode() for i in range(rows * cols)]
            out[dt] = np.array(words, dtype=object).reshape(rows, cols)
        elif dt == "BOOL":
            out[dt] = rng.integers(0, 2, (rows, cols)).astype(np.bool_)
        else:
            dtype = np.dtype(V2_TO_NUMPY[dt])
            if dtype.kind == "f":
                out[dt] = (rng.standard_normal((rows, cols)) * 100).astype(dtype)
            else:
                info = np.iinfo(dtype)
                out[dt] = rng.integers(info.min, info.max, (rows, cols), dtype=dtype,
                                       endpoint=True)
    return out


def sealed_pack(model: Model, name: str, kek: Kek, version: str = "1") -> bytes:
    """A sealed pack of ``model`` for ``kek``, built in memory."""
    entries, payload = container.build_payload({"model.onnx": model.onnx})
    compressed = container.compress(payload, level=3)
    manifest = Manifest(
        name=name, version=version, kind="tensor", runtime="onnx", inputs=model.inputs,
        outputs=model.outputs, files=entries, sha256=hashlib.sha256(payload).hexdigest(),
        size_plain=len(payload), size_packed=len(compressed))
    return seal(manifest, compressed, kek, chunk_size=4096)


def tamper(blob: bytes) -> bytes:
    """Flip one bit in the last sealed chunk (the header stays intact)."""
    edited = bytearray(blob)
    edited[-20] ^= 0x01
    return bytes(edited)


def write(path: Path, blob: bytes) -> Path:
    path.write_bytes(blob)
    return path

