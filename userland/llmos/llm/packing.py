"""Writes an exported causal LM as a plain pack (build side).

The graph and its weights are split the way every ONNX pack is (``llmos.pack.onnx_build``:
graph in ``model.onnx``, large tensors in ``weights.bin``, used in place at load time) and
assembled by the packer (``llmos.pack.packer.assemble``: reproducible, zstd). The
tokenizer, chat template and generation config ride along as files; the manifest's
``extra["llm"]`` describes them (``llmos.llm.packinfo``).
"""

from __future__ import annotations

from llmos.llm.export import ExportedLM
from llmos.llm.packinfo import EXTRA_KEY
from llmos.pack.onnx_build import signature, split_weights
from llmos.pack.packer import ONNX_ENTRYPOINT, BuiltPack, PackSpec, assemble
from llmos.pack.weights import EXTRA_KEY as WEIGHTS_KEY

KIND = "causal-lm"


def build(exported: ExportedLM, name: str, quantization: str, version: str = "1",
          level: int = 12) -> BuiltPack:
    """The pack of an exported LM (``quantization`` is the manifest's field)."""
    graph, weights, table = split_weights(exported.model)
    inputs, outputs = signature(exported.model)
    spec = PackSpec(name=name, version=version, kind=KIND, quantization=quantization,
                    source=exported.source, level=level)
    files = {ONNX_ENTRYPOINT: graph, table.file: weights, **exported.files}
    extra = {EXTRA_KEY: exported.info.to_dict(), WEIGHTS_KEY: table.to_extra()}
    return assemble(spec, runtime="onnx", entrypoint=ONNX_ENTRYPOINT, files=files,
                    inputs=inputs, outputs=outputs, extra=extra)
