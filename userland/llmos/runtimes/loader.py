"""Chooses the runtime for a pack from its manifest (``runtime`` x ``kind``).

The adapters are imported only when a pack needs them: serving ONNX packs never imports
PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmos.errors import ModelLoadError
from llmos.pack.manifest import Manifest
from llmos.runtimes.base import Runtime, RuntimeOptions

KINDS = ("tensor", "embedding")


def load_runtime(manifest: Manifest, files: Mapping[str, memoryview],
                 options: RuntimeOptions) -> Runtime:
    """A loaded model instance for a pack's decrypted files (kept in memory, never copied
    to disk). Raises ModelLoadError (or PackFormatError) with a hint when it cannot."""
    if manifest.kind not in KINDS:
        raise ModelLoadError(
            f"pack {manifest.name!r} is a {manifest.kind!r} model; this loader serves "
            f"{', '.join(KINDS)}", "causal language models are served by the LLM backend")
    if manifest.runtime == "onnx":
        from llmos.runtimes import onnx

        return onnx.load(manifest, files, options)
    if manifest.runtime == "torchscript":
        from llmos.runtimes import torch

        return torch.load(manifest, files, options)
    raise ModelLoadError(f"pack {manifest.name!r} needs runtime {manifest.runtime!r}, "
                         "which this build does not have", "pack the model as ONNX")


def releasable(manifest: Manifest, files: Mapping[str, memoryview],
               options: RuntimeOptions) -> list[memoryview]:
    """The parts of ``files`` that runtimes loaded with ``options`` never read again (their
    pages may be given back once every instance is loaded and warm)."""
    if manifest.runtime == "onnx":
        from llmos.runtimes import onnx

        return onnx.releasable(manifest, files, options)
    return []
