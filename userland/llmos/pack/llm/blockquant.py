"""Weight matrices as blocks of small integers, in onnxruntime's MatMulNBits layout (pure numpy).

A matrix ``w`` [K, N] (a MatMul's right operand) is cut into blocks of ``BLOCK``
consecutive weights along K, for each of its N columns; each block keeps its integers and
a float scale (and, for ``minmax4``, a zero point and a float offset):

``minmax4``     4 bits, the block's minimum and maximum are the ends of the grid:
                ``w = scale * (q - zero_point) + offset``, q in 0..15. The zero point is an
                integer (what MatMulNBits takes); the part of the minimum it cannot hold is
                the per-block ``offset``, which the graph adds as a small correction
                (``llmos.pack.llm.compress``). This is the GGUF Q4_1 grid: weights that were
                dequantised from Q4_1 come back bit for bit.
``symmetric8``  8 bits around zero: ``w = scale * q``, q in -127..127 (stored as q + 128,
                MatMulNBits' and GatherBlockQuantized's default zero point). The GGUF Q8_0
                grid: weights dequantised from Q8_0 come back bit for bit.

``dequantize`` gives the float32 matrix back (for the tests and the reconstruction error
the bench reports).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 32  # weights per block along K


@dataclass(frozen=True)
class Blocks:
    """One matrix [k, n] in blocks. Arrays are in MatMulNBits' input layout."""

    bits: int
    k: int
    n: int
    data: np.ndarray  # uint8 [n, k / BLOCK, BLOCK * bits / 8]
    scales: np.ndarray  # float32 [n * k / BLOCK]
    zero_points: np.ndarray | None  # uint8, packed bits-wide; None: the default 2**(bits-1)
    offsets: np.ndarray | None  # float32 [k / BLOCK, n], added to every weight of a block

    @property
    def n_blocks(self) -> int:
        return self.k // BLOCK


def _blocked(w: np.ndarray) -> np.ndarray:
    """[K, N] -> float64 [N, K / BLOCK, BLOCK] (each column's blocks, in order)."""
    k, n = w.shape
    if k % BLOCK:
        raise ValueError(f"K = {k} is not a multiple of the block size {BLOCK}")
    return np.asarray(w, dtype=np.float64).T.reshape(n, k // BLOCK, BLOCK)


def _pack4(values: np.ndarray) -> np.ndarray:
    """uint8 values < 16, last axis even: pairs into one byte, the first in the low nibble."""
    v = values.astype(np.uint8)
    return (v[..., 0::2] | (v[..., 1::2] << 4)).astype(np.uint8)


def _unpack4(packed: np.ndarray) -> np.ndarray:
    out = np.empty((*packed.shape[:-1], packed.shape[-1] * 2), np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out


def minmax4(w: np.ndarray) -> Blocks:
    """4-bit blocks whose grid runs from each block's minimum to its maximum."""
    k, n = w.shape
    b = _blocked(w)
    low, high = b.min(axis=-1), b.max(axis=-1)
    scale = ((high - low) / 15).astype(np.float32)
    scale[scale == 0] = 1.0  # a constant block: q = 0 and the offset holds the value
    s = scale.astype(np.float64)[..., None]
    q = np.clip(np.rint((b - low[..., None]) / s), 0, 15)
    zero = np.clip(np.rint(-low / scale), 0, 15)
    offset = (low + scale.astype(np.float64) * zero).astype(np.float32)  # [n, blocks]
    zero_bytes = zero.astype(np.uint8)
    if zero_bytes.shape[1] % 2:
        zero_bytes = np.pad(zero_bytes, ((0, 0), (0, 1)))
    return Blocks(4, k, n, _pack4(q), scale.reshape(-1), _pack4(zero_bytes).reshape(-1),
                  np.ascontiguousarray(offset.T))


def symmetric8(w: np.ndarray) -> Blocks:
    """8-bit blocks symmetric around zero (scale = largest magnitude / 127)."""
    k, n = w.shape
    b = _blocked(w)
    scale = (np.abs(b).max(axis=-1) / 127).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(b / scale.astype(np.float64)[..., None]), -127, 127)
    return Blocks(8, k, n, (q + 128).astype(np.uint8), scale.reshape(-1), None, None)


def dequantize(blocks: Blocks) -> np.ndarray:
    """The float32 matrix [k, n] the blocks stand for."""
    nb = blocks.n_blocks
    if blocks.bits == 4:
        q = _unpack4(blocks.data).astype(np.float32)
    else:
        q = blocks.data.astype(np.float32)
    if blocks.zero_points is None:
        zero = np.full((blocks.n, nb), 2 ** (blocks.bits - 1), np.float32)
    elif blocks.bits == 4:
        zero = _unpack4(blocks.zero_points.reshape(blocks.n, -1))[:, :nb].astype(np.float32)
    else:
        zero = blocks.zero_points.reshape(blocks.n, nb).astype(np.float32)
    scale = blocks.scales.reshape(blocks.n, nb, 1)
    w = (q - zero[..., None]) * scale
    if blocks.offsets is not None:
        w = w + blocks.offsets.T[..., None]
    return np.ascontiguousarray(w.reshape(blocks.n, blocks.k).T.astype(np.float32))
