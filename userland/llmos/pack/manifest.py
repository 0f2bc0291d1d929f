"""The pack manifest: what a pack holds, readable without any key (pure data)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from llmos.errors import PackFormatError

MANIFEST_SCHEMA = 1

KINDS = ("tensor", "embedding", "causal-lm")
RUNTIMES = ("onnx", "torchscript")
QUANTIZATIONS = ("none", "int8", "int4", "fp16", "pruned")
COMPRESSIONS = ("zstd", "none")


@dataclass(frozen=True)
class TensorSpec:
    """A public input or output: v2 datatype name and shape (-1 = dynamic)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class FileEntry:
    """One file inside the pack's archive."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Describes a pack. Stored in clear in both plain and sealed packs."""

    name: str
    version: str
    kind: str
    runtime: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    files: tuple[FileEntry, ...]
    sha256: str  # of the uncompressed archive (the plaintext)
    size_plain: int  # bytes of the uncompressed archive
    size_packed: int  # bytes of the archive as stored (compressed, or not)
    quantization: str = "none"
    entrypoint: str = "model.onnx"  # the file the runtime loads
    source: str = ""  # what it was made from, for people
    extra: Mapping[str, Any] = field(default_factory=dict)  # kind-specific (tokenizer, pooling)
    schema: int = MANIFEST_SCHEMA
    # "zstd" (one frame) or "none": stored as is, where compression would not pay for its
    # decompression at every load (``llmos.pack.container.choose``).
    compression: str = "zstd"

    @property
    def compression_ratio(self) -> float:
        return self.size_plain / self.size_packed if self.size_packed else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        if self.compression == "zstd":  # the default: manifests of earlier packs unchanged
            del d["compression"]
        return d

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        try:
            if d.get("schema", MANIFEST_SCHEMA) != MANIFEST_SCHEMA:
                raise PackFormatError(
                    f"manifest schema {d.get('schema')} is not supported (this build reads "
                    f"schema {MANIFEST_SCHEMA})",
                    "repack the model with this version of llmos",
                )
            m = cls(
                name=str(d["name"]),
                version=str(d["version"]),
                kind=str(d["kind"]),
                runtime=str(d["runtime"]),
                inputs=tuple(TensorSpec(t["name"], t["datatype"], tuple(t["shape"]))
                             for t in d["inputs"]),
                outputs=tuple(TensorSpec(t["name"], t["datatype"], tuple(t["shape"]))
                              for t in d["outputs"]),
                files=tuple(FileEntry(f["name"], int(f["size"]), f["sha256"]) for f in d["files"]),
                sha256=str(d["sha256"]),
                size_plain=int(d["size_plain"]),
                size_packed=int(d["size_packed"]),
                quantization=str(d.get("quantization", "none")),
                entrypoint=str(d.get("entrypoint", "model.onnx")),
                source=str(d.get("source", "")),
                extra=dict(d.get("extra", {})),
                compression=str(d.get("compression", "zstd")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PackFormatError(f"malformed manifest: {exc!r}",
                                  "the pack is damaged or not an llmos pack") from exc
        m.validate()
        return m

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            d = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PackFormatError(f"manifest is not JSON: {exc}",
                                  "the pack is damaged or not an llmos pack") from exc
        if not isinstance(d, dict):
            raise PackFormatError("manifest is not a JSON object", "repack the model")
        return cls.from_dict(d)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise PackFormatError(f"unknown model kind {self.kind!r}", f"one of {KINDS}")
        if self.runtime not in RUNTIMES:
            raise PackFormatError(f"unknown runtime {self.runtime!r}", f"one of {RUNTIMES}")
        if self.quantization not in QUANTIZATIONS:
            raise PackFormatError(f"unknown quantization {self.quantization!r}",
                                  f"one of {QUANTIZATIONS}")
        if self.compression not in COMPRESSIONS:
            raise PackFormatError(f"unknown compression {self.compression!r}",
                                  f"one of {COMPRESSIONS}; repack the model with this llmos")
        if self.compression == "none" and self.size_packed != self.size_plain:
            raise PackFormatError("an uncompressed pack's stored and plain sizes differ",
                                  "the pack is damaged; repack the model")
        if not any(f.name == self.entrypoint for f in self.files):
            raise PackFormatError(f"entrypoint {self.entrypoint!r} is not among the pack's files",
                                  "repack the model")
