"""Small real packs (manifest + zstd payload) to seal in tests."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from llmos.pack import container
from llmos.pack.manifest import Manifest, TensorSpec


@dataclass(frozen=True)
class Pack:
    manifest: Manifest
    compressed: bytes
    files: dict[str, bytes]


def make_pack(files: dict[str, bytes], name: str = "alpha", compression: str = "zstd"
              ) -> Pack:
    """``compression`` "none": the payload stored as it is (``Pack.compressed`` is it)."""
    entries, payload = container.build_payload(files)
    compressed = container.compress(payload, level=3) if compression == "zstd" else payload
    manifest = Manifest(
        name=name, version="1", kind="tensor", runtime="onnx",
        inputs=(TensorSpec("x", "FP32", (-1, 4)),), outputs=(TensorSpec("y", "FP32", (-1, 4)),),
        files=entries, sha256=hashlib.sha256(payload).hexdigest(),
        size_plain=len(payload), size_packed=len(compressed), compression=compression,
    )
    return Pack(manifest, compressed, files)


def random_pack(n_bytes: int, seed: int = 0, name: str = "alpha", compression: str = "zstd"
                ) -> Pack:
    """Incompressible content, so the compressed payload is a little over ``n_bytes``."""
    rng = random.Random(seed)
    return make_pack({"model.onnx": rng.randbytes(n_bytes), "vocab.txt": b"a\nb\n" * 50},
                     name=name, compression=compression)
