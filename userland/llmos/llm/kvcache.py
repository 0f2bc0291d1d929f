"""Preallocated key/value caches, one slot per running sequence (pure numpy).

Each layer has one keys array and one values array of shape
``[slots, kv_heads, capacity, head_dim]``. Running sequences occupy slots ``0..n-1``, so
the rows of a decode step are always a contiguous prefix of every array: the graph reads
and appends in place (no per-step copies, no re-padding when a sequence joins). When a
sequence leaves, the last one moves into its slot, copying only the tokens it holds.

The arrays are anonymous mappings of small pages (``lazy_zeros``): memory is committed only
as sequences actually grow into their slots. Transparent hugepages are refused for them: a
2 MiB page spans four slot rows of a layer, so a first eight-row step would fault in (and
zero) the whole cache at once, 720 MiB for SmolLM2's 8 x 2048 tokens (1.4 s on the build
host, half a minute under emulation).
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from llmos.pack.llm.architecture import DecoderSpec


@dataclass(frozen=True)
class CacheLayout:
    slots: int
    capacity: int  # tokens per slot: the context length
    num_layers: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, spec: DecoderSpec, slots: int, capacity: int) -> CacheLayout:
        return cls(slots, capacity, spec.num_layers, spec.num_kv_heads, spec.head_dim)

    @property
    def slot_shape(self) -> tuple[int, int, int]:
        return self.kv_heads, self.capacity, self.head_dim

    @property
    def bytes_per_slot(self) -> int:
        return 2 * self.num_layers * self.kv_heads * self.capacity * self.head_dim * 4


def lazy_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of zeros on an anonymous mapping of small pages, committed as
    touched (the array keeps the mapping alive)."""
    nbytes = max(int(np.prod(shape)) * 4, 1)
    mm = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_NOHUGEPAGE", None)
    if advice is not None:
        with contextlib.suppress(OSError):  # a kernel without THP: small pages anyway
            mm.madvise(advice)
    return np.frombuffer(mm, dtype=np.float32, count=nbytes // 4).reshape(shape)


class KVCache:
    def __init__(self, layout: CacheLayout) -> None:
        self.layout = layout
        shape = (layout.slots, *layout.slot_shape)
        self.keys = [lazy_zeros(shape) for _ in range(layout.num_layers)]
        self.values = [lazy_zeros(shape) for _ in range(layout.num_layers)]

    def arrays(self) -> Iterator[tuple[int, str, np.ndarray]]:
        """(layer, "key" | "value", array) for every cache array."""
        for i in range(self.layout.num_layers):
            yield i, "key", self.keys[i]
            yield i, "value", self.values[i]

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` tokens of slot ``src`` into slot ``dst``."""
        if src == dst or length <= 0:
            return
        for _, _, a in self.arrays():
            a[dst, :, :length] = a[src, :, :length]

    def read(self, slot: int, start: int, stop: int) -> np.ndarray:
        """A read-only copy of tokens ``start..stop`` of ``slot``, every layer's keys and
        values: ``[layers, 2, kv_heads, stop - start, head_dim]``."""
        lay = self.layout
        out = np.empty((lay.num_layers, 2, lay.kv_heads, stop - start, lay.head_dim), np.float32)
        for i in range(lay.num_layers):
            out[i, 0] = self.keys[i][slot, :, start:stop]
            out[i, 1] = self.values[i][slot, :, start:stop]
        out.flags.writeable = False
        return out

    def write(self, slot: int, start: int, block: np.ndarray) -> None:
        """Copy a ``read`` block into ``slot`` from token ``start`` on."""
        stop = start + block.shape[3]
        for i in range(self.layout.num_layers):
            self.keys[i][slot, :, start:stop] = block[i, 0]
            self.values[i][slot, :, start:stop] = block[i, 1]
