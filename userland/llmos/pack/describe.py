"""A manifest for people (``llmos inspect``): aligned fields, sizes in MB (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmos.pack.manifest import Manifest, TensorSpec
from llmos.pack.weights import WeightTable


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _tensors(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{s.name} {s.datatype} [{', '.join(str(d) for d in s.shape)}]"
                     for s in specs)


def describe(manifest: Manifest, sealed: dict[str, Any] | None = None) -> str:
    """Human-readable summary; ``sealed`` holds the fleet key and pack ids of a sealed pack."""
    m = manifest
    sizes = f"plain {_mb(m.size_plain)}, packed {_mb(m.size_packed)} " \
            f"({m.compression_ratio:.2f}x)"
    if "size_source" in m.extra:
        sizes = f"source {_mb(int(m.extra['size_source']))}, {sizes}"
    rows = [("name", m.name), ("version", m.version), ("kind", m.kind),
            ("runtime", m.runtime), ("quantization", m.quantization)]
    if sealed:
        rows.append(("sealed", f"yes, for fleet key {sealed['kek_id']} "
                               f"(pack id {sealed['pack_id']}; manifest not yet authenticated)"))
    else:
        rows.append(("sealed", "no (plain pack)"))
    rows += [("inputs", _tensors(m.inputs)), ("outputs", _tensors(m.outputs)),
             ("sizes", sizes), ("sha256", m.sha256), ("entrypoint", m.entrypoint)]
    rows += [("file", f"{f.name}  {_mb(f.size)}  sha256 {f.sha256[:16]}...") for f in m.files]
    table = WeightTable.from_extra(m.extra)
    if table is not None:
        rows.append(("weights", f"{len(table.entries)} tensors in {table.file}, "
                                f"{_mb(table.size)}, used in place"))
    if m.source:
        rows.append(("source", m.source))
    for key in sorted(set(m.extra) - {"weights", "size_source", "graph"}):
        rows.append((key, str(m.extra[key])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
