"""Weight compression of the decoder graph (build side; onnxruntime's quantisation tools).

* ``int8`` (the served default): every projection gets 8-bit weight blocks (MatMulNBits,
  32 weights per block, asymmetric) whose activations are quantised to int8 per block at
  run time (``accuracy_level`` 4: int8 dot products); the embedding table is int8 per row
  (dynamic quantisation of the Gather). Perplexity stays within 1 % of float32.
* ``int8-dynamic``: classic dynamic quantisation: per-output-channel int8 weights,
  activations quantised with one scale per tensor at run time (MatMulInteger). Weights use
  7 bits (``reduce_range``): x86 CPUs without VNNI multiply u8 x s8 with 16-bit
  saturation, which wrecks a full-range int8 LLM (it babbles). Kept for comparison: one
  scale per activation tensor cannot represent the outlier channels of the MLP's down
  projection inputs, and perplexity rises by ~75 % (``bench/llm_quality.py``).
* ``int4``: 4-bit weight blocks (MatMulNBits; GatherBlockQuantized for the embedding),
  asymmetric, 32 weights per block, int8 compute where the CPU has it.

Both block formats need onnxruntime's weight prepacking at load time to run fast.
The block quantiser logs every node at INFO; its logger is turned down to WARNING.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

from llmos.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("none", "int8", "int8-dynamic", "int4")
BLOCK = 32  # weights per quantisation block (MatMulNBits)


def manifest_name(method: str) -> str:
    """The manifest's ``quantization`` for a method (both int8 methods are "int8")."""
    return "int8" if method.startswith("int8") else method


def quantize(model: onnx.ModelProto, method: str) -> onnx.ModelProto:
    """The model with its weights compressed by ``method`` (``none`` returns it unchanged)."""
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    if method == "none":
        return model
    if method == "int8":
        return _dynamic(_blocks(model, 8, ("MatMul",)), ["Gather"])
    if method == "int8-dynamic":
        return _dynamic(model, ["MatMul", "Gather"])
    if method == "int4":
        return _blocks(model, 4, ("MatMul", "Gather"))
    raise ConfigError(f"unknown quantisation {method!r}", f"one of {', '.join(METHODS)}")


def _blocks(model: onnx.ModelProto, bits: int, op_types: tuple[str, ...]) -> onnx.ModelProto:
    """Weight blocks of ``bits`` for every node of ``op_types`` with constant weights."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    axes = tuple((op, 0 if op == "MatMul" else 1) for op in op_types)
    quantizer = MatMulNBitsQuantizer(
        model, bits=bits, block_size=BLOCK, is_symmetric=False, accuracy_level=4,
        op_types_to_quantize=op_types, quant_axes=axes)
    quantizer.process()
    quantized: onnx.ModelProto = quantizer.model.model
    return quantized


def _dynamic(model: onnx.ModelProto, op_types: list[str]) -> onnx.ModelProto:
    """Dynamic int8 quantisation of ``op_types`` (7-bit, per-channel weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="llmos-int8-") as tmp:
        out = Path(tmp) / "model.onnx"
        quantize_dynamic(model, out, op_types_to_quantize=op_types, per_channel=True,
                         reduce_range=True, weight_type=QuantType.QInt8,
                         use_external_data_format=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return onnx.load_model(str(out), load_external_data=True)
