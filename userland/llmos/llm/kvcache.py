"""Preallocated key/value caches, one slot per running sequence (pure numpy).

Each layer has one keys array and one values array of shape
``[slots, kv_heads, capacity, head_dim]``. Running sequences occupy slots ``0..n-1``, so
the rows of a decode step are always a contiguous prefix of every array: the graph reads
and appends in place (no per-step copies, no re-padding when a sequence joins). When a
sequence leaves, the last one moves into its slot, copying only the tokens it holds.

The arrays come from ``np.zeros`` (lazily mapped pages): memory is committed only as
sequences actually grow into their slots.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from llmos.llm.architecture import DecoderSpec


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


class KVCache:
    def __init__(self, layout: CacheLayout) -> None:
        self.layout = layout
        shape = (layout.slots, *layout.slot_shape)
        self.keys = [np.zeros(shape, np.float32) for _ in range(layout.num_layers)]
        self.values = [np.zeros(shape, np.float32) for _ in range(layout.num_layers)]

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
