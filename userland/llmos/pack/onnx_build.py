"""Build-side ONNX adapter: the only module that imports ``onnx`` and onnxruntime's
quantisation and float16 tools. It runs on the build machine; the appliance never imports it.

It reads a model (a single file, or a file with external data), optionally quantises it
(int8 dynamic quantisation of the weights) or converts it to float16, reads its signature,
and splits it into a graph and a weights file (``llmos.pack.weights``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from llmos.datatypes import NUMPY_TO_V2
from llmos.errors import ModelLoadError
from llmos.pack.manifest import TensorSpec
from llmos.pack.weights import MIN_BYTES, VIEWABLE, WEIGHTS_FILE, WeightTable, concatenate, plan

log = logging.getLogger(__name__)

_PROTOBUF_LIMIT = 2 << 30  # a serialised ModelProto must stay below 2 GiB


def load_model(path: Path) -> onnx.ModelProto:
    """The model at ``path`` with any external data read in."""
    try:
        return onnx.load(str(path), load_external_data=True)
    except (OSError, DecodeError, ValueError) as exc:
        raise ModelLoadError(f"cannot read ONNX model {path}: {exc}",
                             "pass an .onnx file (its external data files beside it)") from exc


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` as one file (a reference copy on the build machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def _matmuls_fed_by(model: onnx.ModelProto, producers: Sequence[str]) -> list[str]:
    """Names of the weight MatMuls whose activation input comes from one of ``producers``."""
    graph = model.graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    weights = {t.name for t in graph.initializer}
    return [node.name for node in graph.node
            if node.op_type == "MatMul" and len(node.input) == 2
            and node.input[1] in weights and made_by.get(node.input[0]) in producers]


def quantize_int8(model: onnx.ModelProto, keep_float_after: Sequence[str] = ()
                  ) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Dynamic int8 quantisation: MatMul and Gather weights to int8, per output channel;
    activations are quantised per tensor at run time. Weights use 7 bits (``reduce_range``):
    x86 CPUs without VNNI multiply u8 x s8 with 16-bit saturation, so full-range weights
    give other answers there than on a VNNI CPU (cosine ~0.994 for MiniLM between a host
    and a TCG guest); with 7 bits the integer products are exact on both. MatMuls whose
    input is made by an op in ``keep_float_after`` stay float (LayerNormalization outputs,
    say, carry the outlier channels per-tensor activation quantisation represents badly).
    Returns the model and a description for the manifest."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    kept = _matmuls_fed_by(model, keep_float_after)
    if "" in kept:  # the quantiser excludes nodes by name
        raise ModelLoadError("MatMuls to keep in float have no names",
                             "name the graph's nodes (exporters do), or drop keep_float_after")
    large = model.ByteSize() > _PROTOBUF_LIMIT // 2
    with tempfile.TemporaryDirectory(prefix="llmos-quant-") as tmp, _quiet_root_logger():
        out = Path(tmp) / "model.int8.onnx"
        quantize_dynamic(model, out, weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True, op_types_to_quantize=["MatMul", "Gather"],
                         nodes_to_exclude=kept, use_external_data_format=large)
        quantized = load_model(out)
    details = {"method": "onnxruntime dynamic int8, per-channel 7-bit weights",
               "ops": ["MatMul", "Gather"], "kept_float_after": list(keep_float_after),
               "kept_float_nodes": len(kept)}
    return quantized, details


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantisation tool logs every skipped node on the root logger; keep errors only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float32 weights and activations to float16; the graph's inputs and outputs keep
    their types, so the pack's public signature does not change."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        converted: onnx.ModelProto = convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:  # the converter raises bare Exceptions on unsupported graphs
        raise ModelLoadError(f"float16 conversion failed: {exc}",
                             "pack with --quantize none or int8") from exc
    return converted


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ModelLoadError(f"graph input/output {value.name!r} is a {kind}, not a tensor",
                             "only tensor inputs and outputs can be served")
    tensor = value.type.tensor_type
    try:
        datatype = NUMPY_TO_V2[np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))]
    except (KeyError, TypeError, ValueError):
        raise ModelLoadError(
            f"graph input/output {value.name!r} has element type "
            f"{onnx.TensorProto.DataType.Name(tensor.elem_type)}, which the inference "
            "protocol cannot carry", "cast it to a supported type in the model") from None
    if not tensor.HasField("shape"):
        raise ModelLoadError(f"graph input/output {value.name!r} has no shape",
                             "export the model with shapes (dynamic axes as named dims)")
    shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
    return TensorSpec(value.name, datatype, shape)


def signature(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The graph's real inputs (initializers excluded) and outputs, as v2 tensor specs."""
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    inputs = tuple(_spec(v) for v in graph.input if v.name not in weights)
    return inputs, tuple(_spec(v) for v in graph.output)


def _constants_to_initializers(graph: onnx.GraphProto, min_bytes: int) -> None:
    """Large ``Constant`` nodes become initializers, so they can live in the weights file."""
    keep: list[onnx.NodeProto] = []
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        value = attrs.get("value")
        if (node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(attrs) == 1
                and value is not None and value.type == onnx.AttributeProto.TENSOR
                and numpy_helper.to_array(value.t).nbytes >= min_bytes):
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data",
                "double_data", "uint64_data")


# Where onnxruntime's CPU kernels prepack a constant input (copy it into their own layout at
# session creation and never read the original again): op -> (input indexes, ranks).
# Verified on the demo packs by zeroing those tensors after the load
# (tests/serving/test_prepacked.py): every answer stays bit for bit the same.
PREPACKING = {"MatMul": ((1,), (2,)), "MatMulInteger": ((1,), (2,))}


def prepacked_weights(model: onnx.ModelProto) -> tuple[str, ...]:
    """Initializers read only as inputs that a CPU kernel prepacks (sorted).

    One whose bytes equal another initializer's is left out: onnxruntime may merge equal
    constants, and the other reader would then read released pages."""
    initializers = {t.name: t for t in model.graph.initializer}
    packed: set[str] = set()
    elsewhere: set[str] = {o.name for o in model.graph.output}
    for node in model.graph.node:
        inputs, ranks = PREPACKING.get(node.op_type, ((), ()))
        for i, name in enumerate(node.input):
            tensor = initializers.get(name)
            fits = i in inputs and tensor is not None and len(tensor.dims) in ranks
            (packed if fits else elsewhere).add(name)
    digest = {name: _digest(initializers[name]) for name in packed - elsewhere}
    copies = Counter(_digest(t) for t in initializers.values())
    return tuple(sorted(n for n, d in digest.items() if copies[d] == 1))


def _digest(tensor: onnx.TensorProto) -> str:
    raw = numpy_helper.to_array(tensor).tobytes()
    return hashlib.sha256(f"{tensor.data_type}:{len(raw)}:".encode() + raw).hexdigest()


def split_weights(model: onnx.ModelProto, min_bytes: int = MIN_BYTES,
                  file: str = WEIGHTS_FILE, first: Collection[str] = ()
                  ) -> tuple[bytes, bytes, WeightTable]:
    """(graph, weights file, table): every initializer of ``min_bytes`` or more whose dtype a
    runtime can view moves to the weights file; the graph keeps it as external data.

    The ``first`` initializers lead the file, in one run: memory that is given back once the
    runtime has copied them (``MemoryPool.release``) is then whole pages, hugepages too."""
    split = onnx.ModelProto()
    split.CopyFrom(model)
    graph = split.graph
    if split.ir_version >= 4:  # older IRs need initializers listed as inputs too
        _constants_to_initializers(graph, min_bytes)
    arrays: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelLoadError(f"initializer {tensor.name!r} still refers to external data",
                                 "load the model with its external data files beside it")
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        if dtype.name not in VIEWABLE:
            continue  # stays in the graph (a per-tensor fallback: numpy cannot view it)
        array = numpy_helper.to_array(tensor)
        if array.nbytes >= min_bytes and tensor.name not in arrays:
            arrays[tensor.name] = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    leading = sorted(arrays, key=lambda name: name not in first)  # stable: graph order kept
    table = plan((name, arrays[name].dtype.name, tuple(arrays[name].shape)) for name in leading)
    weights = concatenate(table, {name: a.tobytes() for name, a in arrays.items()})
    placed = {e.name: e for e in table.entries}
    for tensor in graph.initializer:
        entry = placed.get(tensor.name)
        if entry is None:
            continue
        for field in _DATA_FIELDS:
            tensor.ClearField(field)
        del tensor.external_data[:]
        for key, value in (("location", file), ("offset", entry.offset),
                           ("length", entry.nbytes)):
            item = tensor.external_data.add()
            item.key, item.value = key, str(value)
        tensor.data_location = onnx.TensorProto.EXTERNAL
    log.debug("split %d initializers (%d bytes) out of the graph", len(placed), len(weights))
    return split.SerializeToString(), weights, table
