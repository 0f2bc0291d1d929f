"""Weight compression of the decoder graph (build side; onnxruntime's quantisation tools).

* ``int8``: dynamic quantisation: per-output-channel int8 weights, activations quantised
  per tensor at run time (MatMulInteger), the embedding table as int8 too. Weights use
  7 bits (``reduce_range``): x86 CPUs without VNNI multiply u8 x s8 with 16-bit
  saturation, which wrecks a full-range int8 LLM (it babbles); 7-bit weights cannot
  saturate. The MLP's down projections are the exception: their inputs (SiLU(gate) x up)
  carry outlier channels that one scale per tensor cannot represent (perplexity +70 %), so
  they get 8-bit weight-only blocks (MatMulNBits, activations quantised per block): the
  whole model stays within 1 % of float32 perplexity.
* ``int4``: weight-only 4-bit blocks (MatMulNBits, GatherBlockQuantized for the
  embedding), asymmetric, 32 weights per block, int8 compute where the CPU has it.

The 4-bit quantiser logs every node at INFO; its logger is turned down to WARNING.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

from llmos.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("none", "int8", "int4")
BLOCK = 32  # weights per quantisation block (MatMulNBits)
DOWN_PROJ = ".down_proj"  # node names of the MLP down projections (llmos.llm.onnx_graph)


def quantize(model: onnx.ModelProto, method: str) -> onnx.ModelProto:
    """The model with its weights compressed by ``method`` (``none`` returns it unchanged)."""
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    if method == "none":
        return model
    if method == "int8":
        return _int8(model)
    if method == "int4":
        return _int4(model)
    raise ConfigError(f"unknown quantisation {method!r}", f"one of {', '.join(METHODS)}")


def _blocks(model: onnx.ModelProto, bits: int, nodes: list[str] | None,
            op_types: tuple[str, ...]) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    axes = tuple((op, 0 if op == "MatMul" else 1) for op in op_types)
    quantizer = MatMulNBitsQuantizer(
        model, bits=bits, block_size=BLOCK, is_symmetric=False, accuracy_level=4,
        nodes_to_include=nodes, op_types_to_quantize=op_types, quant_axes=axes)
    quantizer.process()
    quantized: onnx.ModelProto = quantizer.model.model
    return quantized


def _int8(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    downs = [n.name for n in model.graph.node if n.name.endswith(DOWN_PROJ)]
    model = _blocks(model, 8, downs, ("MatMul",))
    with tempfile.TemporaryDirectory(prefix="llmos-int8-") as tmp:
        out = Path(tmp) / "model.onnx"
        quantize_dynamic(model, out, op_types_to_quantize=["MatMul", "Gather"],
                         per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                         use_external_data_format=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return onnx.load_model(str(out), load_external_data=True)


def _int4(model: onnx.ModelProto) -> onnx.ModelProto:
    return _blocks(model, 4, None, ("MatMul", "Gather"))
