"""The weights file of an ONNX pack: where each large tensor lives (pure, numpy only).

An ONNX pack keeps its graph (``model.onnx``) apart from its large initializers, which sit
in ``weights.bin``, each at an ``ALIGN``-byte boundary. The graph still names them, as
ONNX external data pointing into ``weights.bin`` (so the two files, unpacked side by side,
are an ordinary ONNX model), and the manifest's ``extra["weights"]`` describes them again
so that a runtime without the ``onnx`` package can map each tensor straight out of the
decompressed payload: ``views`` returns numpy arrays over the payload's own memory, no copy.

Tensors whose dtype numpy cannot view (bfloat16, float8, int4, strings) stay inside the
graph; see ``VIEWABLE``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from llmos.errors import PackFormatError

WEIGHTS_FILE = "weights.bin"
EXTRA_KEY = "weights"
ALIGN = 64
MIN_BYTES = 1024  # smaller initializers stay in the graph, where optimizers read them

# numpy dtypes a runtime can view in place (names as numpy spells them, little-endian).
VIEWABLE = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32",
                      "uint64", "int64", "float16", "float32", "float64"})


@dataclass(frozen=True)
class WeightEntry:
    """One tensor inside the weights file."""

    name: str
    dtype: str  # numpy dtype name, one of VIEWABLE
    shape: tuple[int, ...]
    offset: int  # bytes from the start of the weights file

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class WeightTable:
    """The tensors of one weights file, in file order.

    ``prepacked``: the tensors only kernels that copy them into their own layout read (a
    MatMul's constant right-hand side, say), leading the file in one run: once a runtime
    has built its session with weight prepacking, their pages can be given back."""

    file: str
    entries: tuple[WeightEntry, ...]
    prepacked: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Bytes of the weights file (the end of its last tensor)."""
        return max((e.offset + e.nbytes for e in self.entries), default=0)

    def to_extra(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "file": self.file, "align": ALIGN,
            "tensors": [{"name": e.name, "dtype": e.dtype, "shape": list(e.shape),
                         "offset": e.offset} for e in self.entries]}
        if self.prepacked:
            doc["prepacked"] = list(self.prepacked)
        return doc

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> WeightTable | None:
        """The table in a manifest's ``extra``, or None when the pack has no weights file."""
        raw = extra.get(EXTRA_KEY)
        if raw is None:
            return None
        try:
            entries = tuple(
                WeightEntry(str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t["shape"]),
                            int(t["offset"]))
                for t in raw["tensors"])
            table = cls(str(raw["file"]), entries,
                        tuple(str(n) for n in raw.get("prepacked", ())))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PackFormatError(f"malformed weights table in the manifest: {exc!r}",
                                  "the pack is damaged; pack the model again") from exc
        if not set(table.prepacked) <= {e.name for e in entries}:
            raise PackFormatError("the weights table names prepacked tensors it does not hold",
                                  "the pack is damaged; pack the model again")
        for e in entries:
            if e.dtype not in VIEWABLE or e.offset < 0 or any(d < 0 for d in e.shape):
                raise PackFormatError(f"weights table entry {e.name!r} is not valid ({e})",
                                      "pack the model again with this version of llmos")
        return table


def plan(tensors: Iterable[tuple[str, str, tuple[int, ...]]],
         file: str = WEIGHTS_FILE) -> WeightTable:
    """Place (name, dtype, shape) tensors one after another, each at an ALIGN boundary."""
    entries: list[WeightEntry] = []
    pos = 0
    for name, dtype, shape in tensors:
        entry = WeightEntry(name, dtype, shape, pos)
        entries.append(entry)
        pos = (pos + entry.nbytes + ALIGN - 1) // ALIGN * ALIGN
    return WeightTable(file, tuple(entries))


def concatenate(table: WeightTable, data: Mapping[str, bytes]) -> bytes:
    """The weights file: each tensor's raw little-endian bytes at its offset, zero padding."""
    out = bytearray(table.size)
    for e in table.entries:
        raw = data[e.name]
        if len(raw) != e.nbytes:
            raise ValueError(f"tensor {e.name!r}: {len(raw)} bytes, its entry says {e.nbytes}")
        out[e.offset:e.offset + e.nbytes] = raw
    return bytes(out)


def views(table: WeightTable, buffer: memoryview) -> dict[str, np.ndarray]:
    """Each tensor as a numpy array over ``buffer`` itself (no copy; read-only if it is)."""
    flat = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
    if table.size > len(flat):
        raise PackFormatError(
            f"{table.file} holds {len(flat)} bytes, its table needs {table.size}",
            "the pack is damaged; pack the model again")
    return {e.name: np.frombuffer(flat, dtype=np.dtype(e.dtype), count=prod(e.shape),
                                  offset=e.offset).reshape(e.shape)
            for e in table.entries}


def runs(table: WeightTable, names: Iterable[str], buffer: memoryview) -> list[memoryview]:
    """Views of ``buffer`` (the weights file) over the tensors ``names``: one view per run
    of them in file order, the alignment padding between neighbours included (pure)."""
    wanted = set(names)
    out: list[memoryview] = []
    start = end = -1
    for e in table.entries:
        if e.name in wanted:
            if start < 0:
                start = e.offset
            end = e.offset + e.nbytes
        elif start >= 0:
            out.append(buffer[start:end])
            start = -1
    if start >= 0:
        out.append(buffer[start:end])
    return out
