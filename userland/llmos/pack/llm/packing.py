"""Writes an exported causal LM as a plain pack (build side).

The graph and its weights are split the way every ONNX pack is (``llmos.pack.onnx_build``:
graph in ``model.onnx``, large tensors in ``weights.bin``, used in place at load time) and
assembled by the packer (``llmos.pack.packer.assemble``: reproducible, zstd). The
tokenizer, chat template and generation config ride along as files; the manifest's
``extra["llm"]`` describes them (``llmos.pack.llm.packinfo``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import replace

import onnx
import onnx.numpy_helper

from llmos.pack import container
from llmos.pack.llm.export import ExportedLM
from llmos.pack.llm.packinfo import EXTRA_KEY
from llmos.pack.onnx_build import signature, split_weights
from llmos.pack.packer import ONNX_ENTRYPOINT, BuiltPack, PackSpec, assemble
from llmos.pack.weights import EXTRA_KEY as WEIGHTS_KEY

KIND = "causal-lm"


# MatMulNBits on the CPU prepacks its input 1 (weight blocks) and, with int8 compute
# (accuracy_level 4), its input 2 (scales), and never reads them again; with float32
# compute it reads the scales, and the 4-bit kernels read the zero points (input 3).
PREPACKED_OP = "MatMulNBits"
INT8_COMPUTE = 4


def _prepacked_inputs(node: onnx.NodeProto) -> tuple[int, ...]:
    level = next((a.i for a in node.attribute if a.name == "accuracy_level"), 0)
    return (1, 2) if level == INT8_COMPUTE else (1,)


def prepacked_weights(model: onnx.ModelProto) -> tuple[str, ...]:
    """Initializers read only as prepacked inputs of MatMulNBits nodes (sorted).

    One whose type, shape and bytes equal another initializer's is left out: onnxruntime's
    ConstantSharing may merge such constants (today only scalars), and the other reader
    would then read the released pages. Equal bytes in another shape are never merged
    (int4-exact's head blocks are the embedding table's bytes, as [vocab, blocks, 32])."""
    initializers = {t.name: t for t in model.graph.initializer}
    packed: set[str] = set()
    elsewhere: set[str] = {o.name for o in model.graph.output}
    for node in model.graph.node:
        inputs = _prepacked_inputs(node) if node.op_type == PREPACKED_OP else ()
        for i, name in enumerate(node.input):
            prepacked = i in inputs
            (packed if prepacked else elsewhere).add(name)
    digest = {name: _digest(t) for name, t in initializers.items()}
    copies = Counter(digest.values())
    return tuple(sorted(n for n in (packed - elsewhere) & digest.keys() if copies[digest[n]] == 1))


def _digest(tensor: onnx.TensorProto) -> str:
    raw = onnx.numpy_helper.to_array(tensor).tobytes()
    shape = list(tensor.dims)
    return hashlib.sha256(f"{tensor.data_type}:{shape}:".encode() + raw).hexdigest()


def build(exported: ExportedLM, name: str, quantization: str, version: str = "1",
          level: int = container.LEVEL) -> BuiltPack:
    """The pack of an exported LM (``quantization`` is the manifest's field)."""
    info = replace(exported.info, prepacked=prepacked_weights(exported.model))
    graph, weights, table = split_weights(exported.model, first=set(info.prepacked))
    inputs, outputs = signature(exported.model)
    spec = PackSpec(name=name, version=version, kind=KIND, quantization=quantization,
                    source=exported.source, level=level)
    files = {ONNX_ENTRYPOINT: graph, table.file: weights, **exported.files}
    extra = {EXTRA_KEY: info.to_dict(), WEIGHTS_KEY: table.to_extra()}
    return assemble(spec, runtime="onnx", entrypoint=ONNX_ENTRYPOINT, files=files,
                    inputs=inputs, outputs=outputs, extra=extra)
