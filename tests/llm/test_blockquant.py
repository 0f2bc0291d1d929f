"""Block quantisation: the GGUF grids come back bit for bit, and the int4-exact graph
computes what the float32 graph computes (onnxruntime, a small decoder-shaped graph)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from llmos.pack.llm import blockquant, compress
from llmos.pack.llm.packing import prepacked_weights

K, N, VOCAB = 64, 96, 128


def q4_1(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """A [k, n] matrix as GGUF Q4_1 dequantises it: fp16 scale and minimum per block of
    32 along k, 4-bit integers that reach 0 and 15 in every block."""
    scale = rng.uniform(0.001, 0.05, (n, k // 32, 1)).astype(np.float16).astype(np.float32)
    low = (-scale * rng.uniform(3, 12, scale.shape)).astype(np.float16).astype(np.float32)
    q = rng.integers(0, 16, (n, k // 32, 32)).astype(np.float32)
    q[..., 0], q[..., 1] = 0, 15
    return (q * scale + low).reshape(n, k).T.copy()


def q8_0(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """As GGUF Q8_0 dequantises it: fp16 scale per block, integers up to +-127."""
    scale = rng.uniform(0.001, 0.02, (n, k // 32, 1)).astype(np.float16).astype(np.float32)
    q = rng.integers(-127, 128, (n, k // 32, 32)).astype(np.float32)
    q[..., 0] = 127
    return (q * scale).reshape(n, k).T.copy()


def test_q4_1_weights_come_back_bit_for_bit() -> None:
    w = q4_1(np.random.default_rng(0), K, N)
    b = blockquant.minmax4(w)
    assert b.data.shape == (N, K // 32, 16) and b.data.dtype == np.uint8
    assert b.offsets is not None and b.offsets.shape == (K // 32, N)
    assert np.array_equal(blockquant.dequantize(b), w)


def test_q8_0_weights_come_back_bit_for_bit() -> None:
    w = q8_0(np.random.default_rng(1), K, N)
    b = blockquant.symmetric8(w)
    assert b.zero_points is None and b.offsets is None
    assert np.array_equal(blockquant.dequantize(b), w)


def test_other_weights_are_within_half_a_step() -> None:
    w = np.random.default_rng(2).normal(size=(K, N)).astype(np.float32)
    for b in (blockquant.minmax4(w), blockquant.symmetric8(w)):
        step = np.repeat(b.scales.reshape(N, K // 32), 32, axis=1).T
        error = np.abs(blockquant.dequantize(b) - w)
        assert np.all(error <= step / 2 * (1 + 1e-5) + 1e-7)
        assert error.max() > 0  # not a grid: something was rounded


def test_block_size_must_divide_k() -> None:
    with pytest.raises(ValueError):
        blockquant.minmax4(np.zeros((40, 4), np.float32))


def decoder_like(rng: np.random.Generator) -> onnx.ModelProto:
    """ids -> tied embedding (Q8_0) -> two projections (Q4_1) -> head = embedding^T."""
    embed = q8_0(rng, K, VOCAB).T.copy()  # [vocab, hidden]
    inits = [numpy_helper.from_array(embed, "embed_tokens.weight"),
             numpy_helper.from_array(q4_1(rng, K, N), "layers.0.up.weight"),
             numpy_helper.from_array(q4_1(rng, N, K), "layers.0.down.weight"),
             numpy_helper.from_array(embed.T.copy(), "lm_head.weight")]
    nodes = [helper.make_node("Gather", ["embed_tokens.weight", "ids"], ["h"], name="embed"),
             helper.make_node("MatMul", ["h", "layers.0.up.weight"], ["u"], name="layers.0.up"),
             helper.make_node("Relu", ["u"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "layers.0.down.weight"], ["d"],
                              name="layers.0.down"),
             helper.make_node("Add", ["d", "h"], ["s"], name="residual"),
             helper.make_node("MatMul", ["s", "lm_head.weight"], ["logits"], name="lm_head")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "seq", VOCAB])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    return model


def run(model: onnx.ModelProto, ids: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {"ids": ids})[0]
    return out


def test_int4_exact_graph_computes_the_float32_logits() -> None:
    model = decoder_like(np.random.default_rng(3))
    ids = np.array([[5, 17, 100, 3, 64]], np.int64)
    reference = run(model, ids)
    scale = np.abs(reference).max()
    top = np.argsort(-reference, axis=-1)[..., :compress.RESCORED]

    def top_error(logits: np.ndarray) -> float:
        return float(np.abs(np.take_along_axis(logits - reference, top, -1)).max())

    exact = compress.quantize(model, "int4-exact")
    ops = [n.op_type for n in exact.graph.node]
    assert ops.count("MatMulNBits") == 3 and ops.count("GatherBlockQuantized") == 2
    # The rescoring reads the embedding's own table: the pack holds it once.
    tables = [t for t in exact.graph.initializer if list(t.dims) == [VOCAB, K]]
    assert [t.data_type for t in tables] == [TensorProto.UINT8]
    rescored = run(exact, ids)
    assert top_error(rescored) < 1e-4 * scale
    assert np.array_equal(rescored.argmax(-1), reference.argmax(-1))
    # Without the rescoring the int8-compute head is off everywhere; the float32 head
    # matrix is exact everywhere.
    unrescored = run(compress.quantize(model, "int4-exact-int8head"), ids)
    assert top_error(unrescored) > 100 * top_error(rescored)
    floathead = run(compress.quantize(model, "int4-exact-floathead"), ids)
    assert np.abs(floathead - reference).max() < 1e-4 * scale
    # The onnxruntime quantiser's int4 re-rounds onto its own grid: far from exact.
    regridded = top_error(run(compress.quantize(model, "int4"), ids))
    assert regridded > 100 * top_error(rescored)


def test_fp16_storage_keeps_the_graph_float32() -> None:
    model = decoder_like(np.random.default_rng(4))
    ids = np.array([[1, 2, 3]], np.int64)
    half = compress.quantize(model, "fp16")
    assert {t.data_type for t in half.graph.initializer} == {TensorProto.FLOAT16}
    np.testing.assert_allclose(run(half, ids), run(model, ids), rtol=0, atol=2e-2)


def test_float32_compute_blocks_keep_their_scales_in_memory() -> None:
    """MatMulNBits with float32 compute reads its scales at run time: only the weight
    blocks may be released after prepacking. The int8-compute head prepacks its scales
    too; the embedding's table, which the rescoring reads, stays."""
    exact = compress.quantize(decoder_like(np.random.default_rng(5)), "int4-exact")
    released = prepacked_weights(exact)
    assert {"layers.0.up.qweight", "lm_head.qweight", "lm_head.scales"} <= set(released)
    assert not any(name.startswith("layers.") and name.endswith((".scales", ".zero_points"))
                   for name in released)
    assert not any(name.startswith("embed") for name in released)
