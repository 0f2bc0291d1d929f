"""The bundled demo models: a name, and where its builder lives.

Builders are imported by dotted name only when needed, so the catalog costs nothing to
import and an entry's module may come from another part of the tree: the causal LM demo
(SmolLM2) lives in ``llmos.demo.smollm2``, next to the LLM engine's needs. An entry whose
module is absent from this build is reported and skipped, not an error, unless asked for.

A builder makes one plain pack, reproducibly, from inputs it can fingerprint: the demo
build caches each pack under a key of that fingerprint and of the packing code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from llmos.errors import LlmosError

if TYPE_CHECKING:
    from llmos.pack.packer import BuiltPack


class DemoBuilder(Protocol):
    """Makes one demo pack."""

    def fingerprint(self) -> Mapping[str, str]:
        """Everything the pack depends on besides the packing code: digests of the source
        files, versions of the tools that transform them, options."""
        ...

    def build(self, name: str, work: Path) -> BuiltPack:
        """The plain pack called ``name``. ``work`` may keep plaintext intermediates (the
        build machine has the plaintext model anyway)."""
        ...


@dataclass(frozen=True)
class DemoEntry:
    name: str
    builder: str  # "package.module:ATTRIBUTE", a DemoBuilder
    summary: str

    @property
    def module(self) -> str:
        return self.builder.partition(":")[0]

    def available(self) -> bool:
        """False when this build does not ship the builder's module."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:  # a missing parent package
            return False

    def load(self) -> DemoBuilder:
        module, _, attribute = self.builder.partition(":")
        try:
            builder: DemoBuilder = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise LlmosError(f"demo {self.name!r}: cannot load its builder {self.builder}: "
                             f"{exc}", "install llmos with its build extra (make venv)"
                             ) from exc
        return builder


CATALOG: tuple[DemoEntry, ...] = (
    DemoEntry("minilm", "llmos.demo.minilm:INT8",
              "all-MiniLM-L6-v2 sentence embeddings, ONNX int8 (the default demo model)"),
    DemoEntry("minilm-fp32", "llmos.demo.minilm:FP32",
              "all-MiniLM-L6-v2 sentence embeddings, ONNX float32"),
    DemoEntry("minilm-torch", "llmos.demo.minilm:TORCHSCRIPT",
              "all-MiniLM-L6-v2 sentence embeddings, TorchScript float32"),
    # The causal LM: its builder is written with the LLM engine, in its own module.
    DemoEntry("smollm2", "llmos.demo.smollm2:BUILDER",
              "SmolLM2-135M-Instruct chat model, ONNX 4-bit on its GGUF grids (answers as "
              "float32 does) with a KV cache"),
)


def module_digest(name: str) -> str:
    """sha256 of a module's source: the code part of a cache key."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise LlmosError(f"module {name} is not installed", "reinstall llmos")
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()
