"""Causal LM export (build side): checkpoint -> ONNX decoder with a KV cache -> compressed.

``export`` reads a Hugging Face-style folder or a GGUF file (``llmos.pack.llm.checkpoint``),
optionally prunes it, builds the decoder graph (``llmos.pack.llm.onnx_graph``), quantises it
(``llmos.pack.llm.compress``) and gathers what serving needs besides the graph: tokenizer.json,
the chat template, the generation config, and a description for the manifest's
``extra["llm"]`` (``llmos.pack.llm.packinfo``).

Exports are cached on disk by content (source identity + options), since each one costs
minutes of CPU: ``export_cached`` returns the stored graph when nothing changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from llmos.errors import ConfigError
from llmos.pack.llm import blockquant, checkpoint, compress, onnx_graph, prune
from llmos.pack.llm.architecture import spec_from_config
from llmos.pack.llm.packinfo import (
    CHAT_TEMPLATE_FILE,
    GENERATION_CONFIG_FILE,
    TOKENIZER_FILE,
    LLMInfo,
    eos_ids,
)

log = logging.getLogger(__name__)

# The code an export goes through: a change to any of them makes cached exports stale.
EXPORT_CODE = (checkpoint, onnx_graph, compress, blockquant, prune)


@dataclass(frozen=True)
class ExportOptions:
    quantization: str = "int8"  # one of llmos.pack.llm.compress.METHODS
    sparsity: float = 0.0  # magnitude pruning of the projections before quantising
    context_length: int = 2048  # tokens per sequence the server preallocates

    def __post_init__(self) -> None:
        if self.quantization not in compress.METHODS:
            raise ConfigError(f"unknown quantisation {self.quantization!r}",
                              f"one of {', '.join(compress.METHODS)}")
        if self.context_length < 2:
            raise ConfigError(f"context_length must be >= 2, got {self.context_length}",
                              "give the longest prompt plus answer to serve, in tokens")

    @property
    def manifest_quantization(self) -> str:
        """The manifest's ``quantization`` field for these options."""
        if self.quantization == "none" and self.sparsity > 0:
            return "pruned"
        return compress.manifest_name(self.quantization)


@dataclass(frozen=True)
class ExportedLM:
    """A decoder graph (weights inside) and the files and facts serving needs with it."""

    model: onnx.ModelProto
    files: Mapping[str, bytes]  # tokenizer.json, chat_template.jinja, generation_config.json
    info: LLMInfo
    source: str
    seconds: float  # how long the export took (0 when it came from the cache)


def export(source: Path, options: ExportOptions, cache_dir: Path) -> ExportedLM:
    """Export ``source`` (folder or .gguf); a GGUF is dequantised once into ``cache_dir``."""
    started = time.perf_counter()
    ckpt = checkpoint.read(source, cache_dir)
    spec = spec_from_config(ckpt.config)
    weights = ckpt.weights
    if options.sparsity > 0:
        weights = prune.magnitude_prune(weights, options.sparsity)
    context = min(options.context_length, spec.max_positions)
    model = onnx_graph.build_decoder(spec, weights)
    model = compress.quantize(model, options.quantization)
    files: dict[str, bytes] = {
        TOKENIZER_FILE: ckpt.tokenizer_json,
        GENERATION_CONFIG_FILE: json.dumps(dict(ckpt.generation_config), indent=1).encode(),
    }
    if ckpt.chat_template:
        files[CHAT_TEMPLATE_FILE] = ckpt.chat_template.encode()
    special = json.loads(ckpt.tokenizer_json).get("added_tokens", [])
    info = LLMInfo(
        decoder=spec,
        context_length=context,
        eos_token_ids=eos_ids(ckpt.generation_config, ckpt.config),
        bos_token=_token_text(special, ckpt.config.get("bos_token_id")),
        eos_token=_token_text(special, next(iter(eos_ids(ckpt.generation_config, ckpt.config)),
                                            None)),
        chat_template=CHAT_TEMPLATE_FILE if ckpt.chat_template else None,
        sparsity=options.sparsity,
    )
    seconds = time.perf_counter() - started
    log.info("exported %s (%s) in %.0f s", source.name, options.quantization, seconds)
    return ExportedLM(model, files, info, source.name, seconds)


def _token_text(added: list[dict[str, Any]], token_id: Any) -> str | None:
    if not isinstance(token_id, int):
        return None
    return next((str(t["content"]) for t in added if t.get("id") == token_id), None)


def _fingerprint(source: Path, options: ExportOptions) -> str:
    """Identity of an export: the source files' names, sizes and times, the options and the
    exporting code."""
    paths = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    h = hashlib.sha256(json.dumps(asdict(options)).encode())
    for module in (*EXPORT_CODE, sys.modules[__name__]):
        h.update(Path(str(module.__file__)).read_bytes())
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(source.parent)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def export_cached(source: Path, options: ExportOptions, cache_dir: Path) -> ExportedLM:
    """``export``, or the stored result of the same export under ``cache_dir`` (an older
    export of the same source and options, by older code, is removed)."""
    kind = options.quantization
    if options.sparsity:
        kind += f"-pruned{round(options.sparsity * 100)}"
    prefix = f"{source.stem}-{kind}-"
    slot = cache_dir / f"{prefix}{_fingerprint(source, options)}"
    done = slot / "export.json"
    if done.is_file():
        meta = json.loads(done.read_text())
        log.info("using cached export %s", slot)
        files = {name: (slot / name).read_bytes() for name in meta["files"]}
        return ExportedLM(onnx_graph.load(slot / "model.onnx"), files,
                          LLMInfo.from_dict(meta["info"]), meta["source"], 0.0)
    exported = export(source, options, cache_dir)
    for stale in cache_dir.glob(f"{prefix}*"):
        shutil.rmtree(stale)
    slot.mkdir(parents=True, exist_ok=True)
    onnx_graph.save(exported.model, slot / "model.onnx")
    for name, data in exported.files.items():
        (slot / name).write_bytes(data)
    done.write_text(json.dumps({"files": sorted(exported.files), "info": exported.info.to_dict(),
                                "source": exported.source, "seconds": exported.seconds}))
    # Saving moved the weights out of the in-memory model; read them back in.
    return replace(exported, model=onnx_graph.load(slot / "model.onnx"))
