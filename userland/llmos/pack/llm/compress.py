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
  blocks with a float offset per block (``llmos.pack.llm.blockquant.minmax4``), float32
  compute; the embedding table in 8-bit symmetric blocks (``symmetric8``), and the tied
  output head in the same blocks. SmolLM2's weights come from a GGUF whose projections
  are Q4_1 and whose embedding is Q8_0: these grids are theirs, so every weight is kept
  bit for bit. MatMulNBits takes integer zero points only; the rest of each block's
  minimum (``Blocks.offsets``) is added back by a small side product: the sums of each
  block of the input times the offsets ([K/32, N], 1/32 of the main product). The head
  computes with int8 (a float32 head matrix would hold ~4x the table's bytes), then its
  ``RESCORED`` best logits again in float32 from the embedding's rows of the same blocks
  (TopK, GatherBlockQuantized, ScatterElements): the greedy choice and the top logits are
  float32's to ~1e-4; the far tail keeps int8 rounding. The price is float32 compute in
  the projections: more CPU time per token than int8 compute (bench/QUALITY.md).
  ``int4-exact-floathead`` has the head as a float32 matrix the session builds from the
  blocks (the pack holds the blocks once; the process the matrix); ``int4-exact-int8head``
  and ``int4-exact-int8`` are the same weights with int8 compute in the head without
  rescoring, or everywhere: variants that show what changes answers and what costs memory.
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
           "int4-exact-floathead", "int4-exact-int8head", "int4-exact-int8")  # diagnostics
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
    if method == "int4-exact-floathead":  # the head a float32 matrix
        return exact_blocks(model, head="float")
    if method == "int4-exact-int8head":  # only the head's activations rounded to int8
        return exact_blocks(model, head="int8")
    if method == "int4-exact-int8":  # every activation rounded to int8 (int8 compute)
        return exact_blocks(model, INT8_COMPUTE, head="int8")
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


HEAD = "lm_head"  # the output projection's node (llmos.pack.llm.onnx_graph)
FP32_COMPUTE, INT8_COMPUTE = 1, 4  # MatMulNBits accuracy_level
RESCORED = 64  # logits of the int8-compute head computed again in float32
MIN_ELEMENTS = 1024  # smaller float tensors (norm weights) stay float32


def exact_blocks(model: onnx.ModelProto, body_compute: int = FP32_COMPUTE,
                 head: str = "rescored") -> onnx.ModelProto:
    """``int4-exact``: the projections in 4-bit min/max blocks plus offsets, the embedding
    (Gather) and the output head (MatMul ``HEAD``) in 8-bit symmetric blocks.

    ``body_compute`` is the projections' MatMulNBits accuracy level. ``head``:
    ``rescored``: a MatMulNBits with int8 compute whose best logits are computed again in
    float32; ``float``: an ordinary float32 MatMul whose weight the graph computes from
    the blocks (Cast, Sub, Mul, Reshape, Transpose of constants, which onnxruntime folds
    into one float32 matrix when it builds the session); ``int8``: the int8 MatMulNBits
    alone. A head tied to the embedding reads the embedding's blocks, held once."""
    from onnx import numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    out = _Writer()
    used: set[str] = set()
    for node in model.graph.node:
        const_input = node.input[1] if node.op_type == "MatMul" else (
            node.input[0] if node.op_type == "Gather" else "")
        if const_input not in weights:
            out.nodes.append(node)
            continue
        used.add(const_input)
        w = numpy_helper.to_array(weights[const_input])
        if node.op_type == "Gather":
            _gather8(out, node, w)
        elif node.name == HEAD and head == "float":
            _float_head8(out, node, w)
        elif node.name == HEAD and head == "rescored":
            _rescored_head8(out, node, w)
        else:
            _matmul_nbits(out, node, w, INT8_COMPUTE if node.name == HEAD else body_compute)
    kept = [t for t in model.graph.initializer if t.name not in used]
    return _rewritten(model, out.nodes, kept + list(out.added.values()))


class _Writer:
    """The nodes of a graph being rewritten, and the constants added to it (by content:
    equal blocks, such as a tied embedding's and head's, are stored once)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.added: dict[bytes, onnx.TensorProto] = {}

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
        key = f"{tensor.data_type}:{list(tensor.dims)}:".encode() + tensor.raw_data
        return self.added.setdefault(key, tensor).name

    def emit(self, op_type: str, inputs: list[str], outputs: list[str], name: str,
             **attrs: Any) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """A node whose one output bears its name."""
        self.emit(op_type, inputs, [name], name, **attrs)
        return name

    def node(self, op_type: str, inputs: list[str], node: onnx.NodeProto,
             **attrs: Any) -> None:
        """The node that replaces ``node``: the same name and outputs."""
        self.emit(op_type, inputs, list(node.output), node.name, **attrs)


def _gather8(out: _Writer, node: onnx.NodeProto, w: np.ndarray) -> None:
    """An embedding [vocab, hidden] in 8-bit blocks along hidden (its rows)."""
    from llmos.pack.llm import blockquant

    p = node.name
    e = blockquant.symmetric8(w.T)
    data = out.const(f"{p}.qweight", e.data.reshape(e.n, e.k))
    scales = out.const(f"{p}.scales", e.scales.reshape(e.n, e.n_blocks))
    out.node("GatherBlockQuantized", [data, node.input[1], scales], node, domain=MS_DOMAIN,
             gather_axis=0, quantize_axis=1, block_size=blockquant.BLOCK, bits=8)


def _float_head8(out: _Writer, node: onnx.NodeProto, w: np.ndarray) -> None:
    """A head [hidden, vocab] in 8-bit blocks laid out as the embedding's rows (the tied
    embedding transposed), made float32 by constant nodes the session folds."""
    from llmos.pack.llm import blockquant

    p = node.name
    e = blockquant.symmetric8(w)
    data = out.const(f"{p}.qweight", e.data.reshape(e.n, e.k))
    scales = out.const(f"{p}.scales", e.scales.reshape(e.n, e.n_blocks))
    blocked = out.op("Reshape", [out.op("Cast", [data], f"{p}/q", to=onnx.TensorProto.FLOAT),
                                 out.const(f"{p}.block_shape", np.array(
                                     [e.n, e.n_blocks, blockquant.BLOCK], np.int64))],
                     f"{p}/q_blocks")
    centred = out.op("Sub", [blocked, out.const(f"{p}.zero", np.array(128.0, np.float32))],
                     f"{p}/q_centred")
    scaled = out.op("Mul", [centred, out.op("Unsqueeze", [scales, out.const(
        f"{p}.last", np.array([-1], np.int64))], f"{p}/scales")], f"{p}/rows")
    flat = out.op("Reshape", [scaled, out.const(f"{p}.shape", np.array([e.n, e.k], np.int64))],
                  f"{p}/rows_flat")
    weight = out.op("Transpose", [flat], f"{p}/weight", perm=[1, 0])
    out.node("MatMul", [node.input[0], weight], node)


def _rescored_head8(out: _Writer, node: onnx.NodeProto, w: np.ndarray) -> None:
    """A head [hidden, vocab] in 8-bit blocks with int8 compute, whose ``RESCORED`` best
    logits are computed again in float32 from the embedding's rows of the same blocks."""
    from llmos.pack.llm import blockquant

    p, h = node.name, node.input[0]
    b = blockquant.symmetric8(w)
    approx = out.op("MatMulNBits", [h, out.const(f"{p}.qweight", b.data),
                                    out.const(f"{p}.scales", b.scales)], f"{p}/approx",
                    domain=MS_DOMAIN, K=b.k, N=b.n, bits=8, block_size=blockquant.BLOCK,
                    accuracy_level=INT8_COMPUTE)
    top = f"{p}/top"
    out.emit("TopK", [approx, out.const(f"{p}.rescored", np.array([RESCORED], np.int64))],
             [f"{p}/top_values", top], f"{p}/topk", axis=-1)
    rows = out.op("GatherBlockQuantized", [
        out.const(f"{p}.rows", b.data.reshape(b.n, b.k)), top,
        out.const(f"{p}.row_scales", b.scales.reshape(b.n, b.n_blocks))], f"{p}/rows",
        domain=MS_DOMAIN, gather_axis=0, quantize_axis=1, block_size=blockquant.BLOCK, bits=8)
    column = out.op("Unsqueeze", [h, out.const(f"{p}.last", np.array([-1], np.int64))],
                    f"{p}/column")
    exact = out.op("Squeeze", [out.op("MatMul", [rows, column], f"{p}/dots"),
                               out.const(f"{p}.last", np.array([-1], np.int64))], f"{p}/exact")
    out.node("ScatterElements", [approx, top, exact], node, axis=-1)


def _matmul_nbits(out: _Writer, node: onnx.NodeProto, w: np.ndarray, compute: int) -> None:
    """A projection [K, N] as MatMulNBits: 4-bit min/max blocks whose offsets a block-sum
    product adds back, or (the head) 8-bit symmetric blocks."""
    from llmos.pack.llm import blockquant

    p = node.name
    b = blockquant.symmetric8(w) if p == HEAD else blockquant.minmax4(w)
    inputs = [node.input[0], out.const(f"{p}.qweight", b.data),
              out.const(f"{p}.scales", b.scales)]
    if b.zero_points is not None:
        inputs.append(out.const(f"{p}.zero_points", b.zero_points))
    attrs = {"domain": MS_DOMAIN, "K": b.k, "N": b.n, "bits": b.bits,
             "block_size": blockquant.BLOCK, "accuracy_level": compute}
    main = node.output[0] if b.offsets is None else f"{p}/blocks"
    out.emit("MatMulNBits", inputs, [main], p, **attrs)
    if b.offsets is None:
        return
    in_blocks = out.op("Reshape", [node.input[0], out.const(f"{p}.block_shape", np.array(
        [0, 0, b.n_blocks, blockquant.BLOCK], np.int64))], f"{p}/in_blocks")
    sums = out.op("ReduceSum", [in_blocks, out.const(f"{p}.last", np.array([-1], np.int64))],
                  f"{p}/block_sums", keepdims=0)
    offset = out.op("MatMul", [sums, out.const(f"{p}.offsets", b.offsets)], f"{p}/offset")
    out.emit("Add", [main, offset], list(node.output), f"{p}/with_offset")


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
