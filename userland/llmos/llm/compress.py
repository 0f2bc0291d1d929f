"""Weight compression of the decoder graph (build side; onnxruntime's quantisation tools).

* ``int8`` (served until bench/llm_agreement.py showed its answers drift): every
  projection gets 8-bit weight blocks (MatMulNBits, 32 weights per block, asymmetric)
  whose activations are quantised to int8 per block at run time (``accuracy_level`` 4:
  int8 dot products); the embedding table is int8 per row (dynamic quantisation of the
  Gather). Perplexity stays within 1 % of float32, yet ~40 % of greedy answers change.
* ``int8-dynamic``: classic dynamic quantisation: per-output-channel int8 weights,
  activations quantised with one scale per tensor at run time (MatMulInteger). Weights use
  7 bits (``reduce_range``): x86 CPUs without VNNI multiply u8 x s8 with 16-bit
  saturation, which wrecks a full-range int8 LLM (it babbles). Kept for comparison: one
  scale per activation tensor cannot represent the outlier channels of the MLP's down
  projection inputs, and perplexity rises by ~75 % (``bench/llm_quality.py``).
* ``int4``: 4-bit weight blocks (MatMulNBits; GatherBlockQuantized for the embedding),
  asymmetric, 32 weights per block, int8 compute where the CPU has it.
* ``int4-exact`` (served: it answers as float32 does): the projections in 4-bit min/max
  blocks with a float offset per block (``llmos.llm.blockquant.minmax4``), float32
  compute; the embedding table in 8-bit symmetric blocks (``symmetric8``), and the tied
  output head made from the same blocks, as float32, when the session is built. SmolLM2's
  weights come from a GGUF whose projections are Q4_1 and whose embedding is Q8_0: these
  grids are theirs, so every weight is kept bit for bit and nothing is rounded at run
  time; the logits equal float32's to ~1e-4. MatMulNBits takes integer zero points only;
  the rest of each block's minimum (``Blocks.offsets``) is added back by a small side
  product: the sums of each block of the input times the offsets ([K/32, N], 1/32 of the
  main product). The price is float32 compute, ~2.5x the CPU time of int8 compute per
  token (bench/QUALITY.md); the memory of a float32 head.
  ``int4-exact-int8head`` and ``int4-exact-int8`` are the same weights with int8 compute
  in the head, or everywhere: diagnostics that show where answers change.
* ``fp16``: every large float32 weight stored as float16 and cast back when the session
  is built (a smaller pack; float32 memory and speed).

Why not the others for serving: greedy answers are chaotic, one flipped token changes the
rest, and int8 compute in every layer (``int8``) or re-rounding 4-bit weights to another
grid (``int4``, and ``int8`` itself) flips enough of them that answers to simple questions
change (bench/llm_agreement.py measures how many).

Both block formats need onnxruntime's weight prepacking at load time to run fast.
The block quantiser logs every node at INFO; its logger is turned down to WARNING.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from llmos.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("none", "int8", "int8-dynamic", "int4", "int4-exact", "fp16",
           "int4-exact-int8head", "int4-exact-int8")  # the last two: diagnostics
BLOCK = 32  # weights per quantisation block (MatMulNBits)
MS_DOMAIN = "com.microsoft"


def manifest_name(method: str) -> str:
    """The manifest's ``quantization`` for a method (both int8 methods are "int8", both
    int4 ones "int4")."""
    for family in ("int8", "int4"):
        if method.startswith(family):
            return family
    return method


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
    if method == "int4-exact":
        return exact_blocks(model)
    if method == "int4-exact-int8head":  # only the head's activations rounded to int8
        return exact_blocks(model, head_compute=INT8_COMPUTE)
    if method == "int4-exact-int8":  # every activation rounded to int8 (int8 compute)
        return exact_blocks(model, INT8_COMPUTE, INT8_COMPUTE)
    if method == "fp16":
        return float16_storage(model)
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


HEAD = "lm_head"  # the output projection's node (llmos.llm.onnx_graph)
FP32_COMPUTE, INT8_COMPUTE = 1, 4  # MatMulNBits accuracy_level
MIN_ELEMENTS = 1024  # smaller float tensors (norm weights) stay float32


def exact_blocks(model: onnx.ModelProto, body_compute: int = FP32_COMPUTE,
                 head_compute: int = FP32_COMPUTE) -> onnx.ModelProto:
    """``int4-exact``: the projections in 4-bit min/max blocks plus offsets, the embedding
    (Gather) and the output head (MatMul ``HEAD``) in 8-bit symmetric blocks.

    ``body_compute`` is the projections' MatMulNBits accuracy level. With ``head_compute``
    ``FP32_COMPUTE`` the head is an ordinary float32 MatMul whose weight the graph computes
    from its blocks (Cast, Sub, Mul, Reshape, Transpose of constants: onnxruntime folds them
    into one float32 matrix when it builds the session); a head tied to the embedding has
    the embedding's blocks, which the pack then holds once. With ``INT8_COMPUTE`` it is a
    MatMulNBits with int8 compute (smaller in memory, and answers differ more often)."""
    from onnx import helper, numpy_helper

    from llmos.llm import blockquant

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    used: set[str] = set()
    added: dict[bytes, onnx.TensorProto] = {}  # by content: equal blocks are stored once

    def const(name: str, array: np.ndarray) -> str:
        tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
        key = f"{tensor.data_type}:{list(tensor.dims)}:".encode() + tensor.raw_data
        return added.setdefault(key, tensor).name

    def op(op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    for node in graph.node:
        const_input = node.input[1] if node.op_type == "MatMul" else (
            node.input[0] if node.op_type == "Gather" else "")
        if const_input not in weights:
            nodes.append(node)
            continue
        used.add(const_input)
        w = numpy_helper.to_array(weights[const_input])
        p = node.name
        if node.op_type == "Gather" or (p == HEAD and head_compute == FP32_COMPUTE):
            # Rows of [vocab, hidden] in blocks along hidden: the embedding's own layout,
            # and the head's (its weight [hidden, vocab] is the tied embedding transposed).
            rows = w if node.op_type == "Gather" else w.T
            e = blockquant.symmetric8(rows.T)
            data = const(f"{p}.qweight", e.data.reshape(e.n, e.k))
            scales = const(f"{p}.scales", e.scales.reshape(e.n, e.n_blocks))
            if node.op_type == "Gather":
                nodes.append(helper.make_node(
                    "GatherBlockQuantized", [data, node.input[1], scales], list(node.output),
                    name=p, domain=MS_DOMAIN, gather_axis=0, quantize_axis=1,
                    block_size=blockquant.BLOCK, bits=8))
                continue
            blocked = op("Reshape", [op("Cast", [data], f"{p}/q", to=onnx.TensorProto.FLOAT),
                                     const(f"{p}.block_shape", np.array(
                                         [e.n, e.n_blocks, blockquant.BLOCK], np.int64))],
                         f"{p}/q_blocks")
            centred = op("Sub", [blocked, const(f"{p}.zero", np.array(128.0, np.float32))],
                         f"{p}/q_centred")
            scaled = op("Mul", [centred, op("Unsqueeze", [scales, const(
                f"{p}.last", np.array([-1], np.int64))], f"{p}/scales")], f"{p}/rows")
            flat = op("Reshape", [scaled, const(f"{p}.shape", np.array([e.n, e.k], np.int64))],
                      f"{p}/rows_flat")
            weight = op("Transpose", [flat], f"{p}/weight", perm=[1, 0])
            nodes.append(helper.make_node("MatMul", [node.input[0], weight], list(node.output),
                                          name=p))
            continue
        head = p == HEAD
        b = blockquant.symmetric8(w) if head else blockquant.minmax4(w)
        inputs = [node.input[0], const(f"{p}.qweight", b.data), const(f"{p}.scales", b.scales)]
        if b.zero_points is not None:
            inputs.append(const(f"{p}.zero_points", b.zero_points))
        main = node.output[0] if b.offsets is None else f"{p}/blocks"
        nodes.append(helper.make_node(
            "MatMulNBits", inputs, [main], name=p, domain=MS_DOMAIN, K=b.k, N=b.n,
            bits=b.bits, block_size=blockquant.BLOCK,
            accuracy_level=head_compute if head else body_compute))
        if b.offsets is not None:
            in_blocks = op("Reshape", [node.input[0], const(f"{p}.block_shape", np.array(
                [0, 0, b.n_blocks, blockquant.BLOCK], np.int64))], f"{p}/in_blocks")
            sums = op("ReduceSum", [in_blocks, const(f"{p}.last", np.array([-1], np.int64))],
                      f"{p}/block_sums", keepdims=0)
            offset = op("MatMul", [sums, const(f"{p}.offsets", b.offsets)], f"{p}/offset")
            nodes.append(helper.make_node("Add", [main, offset], list(node.output),
                                          name=f"{p}/with_offset"))
    kept = [t for t in graph.initializer if t.name not in used]
    return _rewritten(model, nodes, kept + list(added.values()))


def float16_storage(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every float32 weight matrix (of a MatMul or a Gather, at least ``MIN_ELEMENTS``)
    stored as float16, behind a Cast that onnxruntime folds when it builds the session;
    the rotary tables and norms stay float32."""
    from onnx import TensorProto, helper, numpy_helper

    matrices = {n.input[1] for n in model.graph.node if n.op_type == "MatMul"} | {
        n.input[0] for n in model.graph.node if n.op_type == "Gather"}
    kept: list[onnx.TensorProto] = []
    casts: list[onnx.NodeProto] = []
    for t in model.graph.initializer:
        if (t.data_type != TensorProto.FLOAT or t.name not in matrices
                or int(np.prod(t.dims)) < MIN_ELEMENTS):
            kept.append(t)
            continue
        half = numpy_helper.to_array(t).astype(np.float16)
        kept.append(numpy_helper.from_array(half, f"{t.name}.fp16"))
        casts.append(helper.make_node("Cast", [f"{t.name}.fp16"], [t.name],
                                      name=f"{t.name}/cast", to=TensorProto.FLOAT))
    return _rewritten(model, [*casts, *model.graph.node], kept)


def _rewritten(model: onnx.ModelProto, nodes: list[onnx.NodeProto],
               initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(initializers)
    return out
