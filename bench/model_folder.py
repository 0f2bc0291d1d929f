"""The tensor model as the peers get it: the very ONNX file LLM OS seals, plus its tokenizer.

The sealed demo pack is opened with the fleet key (this is the build machine, which holds
the key and the plaintext reference files under ``build/demo/work/``). The peers' ONNX
file is the reference file whose weights equal the pack's, tensor for tensor, so every
contestant provably runs the same model. Only the tokenizer and settings are written.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from bench.peers.embedder import SETTINGS_FILE
from llmos.pack.container import split_files
from llmos.pack.manifest import Manifest
from llmos.pack.weights import WeightTable, views
from llmos.vault.keyfile import read_keyfile
from llmos.vault.sealed import SealedPack, open_payload

log = logging.getLogger(__name__)


class ModelFolderError(RuntimeError):
    """The sealed pack or its plaintext reference ONNX file is not where the bench looks."""


@dataclass(frozen=True)
class ModelFolder:
    path: Path  # model.onnx, tokenizer.json, embedder.json
    manifest: Manifest
    onnx_source: Path  # the reference file model.onnx links to
    onnx_sha256: str  # of that file


def embedding_extra(manifest: Manifest) -> Mapping[str, Any]:
    """The pack's ``extra["embedding"]``: tokenizer file, max_length, dim (pure)."""
    raw = manifest.extra.get("embedding")
    if not isinstance(raw, Mapping) or "tokenizer" not in raw:
        raise ModelFolderError(f"pack {manifest.name!r} is not an embedding pack "
                               "(no extra.embedding.tokenizer)")
    return raw


def embedder_settings(manifest: Manifest, threads: int) -> dict[str, Any]:
    """The peers' pre/post-processing, as LLM OS does it for this pack (pure).

    An LLM OS embedding graph pools and normalises inside, so the peers only tokenize
    (padded to the longest, truncated to ``max_length``) and run it.
    """
    extra = embedding_extra(manifest)
    return {"max_length": int(extra["max_length"]), "pooling": "none", "normalize": False,
            "intra_op_threads": threads}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def same_weights(packed: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> bool:
    """True when every packed tensor is in ``reference`` with equal shape, dtype and values."""
    return bool(packed) and all(
        name in reference and reference[name].dtype == array.dtype
        and reference[name].shape == array.shape and np.array_equal(reference[name], array)
        for name, array in packed.items())


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Initializer shapes, without reading external weights (a cheap first filter)."""
    model = onnx.load(str(path), load_external_data=False)
    return {t.name: tuple(t.dims) for t in model.graph.initializer}


def _initializers(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def find_reference(candidates: Iterable[Path], manifest: Manifest,
                   files: Mapping[str, memoryview]) -> Path:
    """The plaintext ONNX file the pack was made from.

    A pack splits its graph from its weights (``weights.bin``), so the reference is the
    file whose initializers equal, tensor for tensor, the pack's weights; a pack that kept
    its weights inline matches by the SHA-256 of its graph.
    """
    table = WeightTable.from_extra(manifest.extra)
    entry = next(f for f in manifest.files if f.name == manifest.entrypoint)
    packed = views(table, files[table.file]) if table is not None else {}
    for path in sorted(p for p in candidates if p.is_file()):
        if table is None and _sha256(path) == entry.sha256:
            return path
        if table is None:
            continue
        shapes = _shapes(path)
        if all(shapes.get(e.name) == e.shape for e in table.entries) and same_weights(
                packed, _initializers(path)):
            return path
    raise ModelFolderError(f"no plaintext ONNX file under the demo's work folder holds the "
                           f"weights of pack {manifest.name!r}; run 'make demo-packs' again")


def prepare(sealed: Path, key: Path, work: Path, out: Path, threads: int = 0) -> ModelFolder:
    """Write ``out`` (tokenizer, settings, a link to the reference ONNX) for ``sealed``."""
    if not sealed.exists():
        raise ModelFolderError(f"{sealed} does not exist; run 'make demo-packs'")
    pack = SealedPack.open(sealed)
    manifest = pack.manifest
    files = split_files(manifest, open_payload(pack, read_keyfile(key)))
    reference = find_reference(work.rglob("*.onnx"), manifest, files)
    out.mkdir(parents=True, exist_ok=True)
    link = out / "model.onnx"
    link.unlink(missing_ok=True)
    link.symlink_to(reference.resolve())
    (out / "tokenizer.json").write_bytes(bytes(files[str(embedding_extra(manifest)["tokenizer"])]))
    settings = embedder_settings(manifest, threads)
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1))
    digest = _sha256(reference)
    log.info("model folder %s: %s (sha256 %s...), %s", out, reference, digest[:12], settings)
    return ModelFolder(out, manifest, reference, digest)
