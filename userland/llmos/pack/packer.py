"""Packing: a model becomes a plain pack (manifest + zstd-compressed payload).

ONNX models (one file, or a file with external data) are optionally quantised (int8
dynamic, or float16), split into a graph and a weights file (``llmos.pack.weights``: the
layout that lets the runtime use the weights in place) and compressed. TorchScript modules
are packed as they are. An ``embedding`` pack also carries its ``tokenizer.json``.

Packing is reproducible: the same input and options give a byte-identical pack. Files are
sorted, the manifest JSON is canonical, and nothing records a time, a path, a random value
or the machine (zstd is deterministic for a given level).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from llmos import __version__
from llmos.errors import ConfigError, LlmosError, ModelLoadError
from llmos.files import atomic_write
from llmos.pack import container, embedding
from llmos.pack.manifest import Manifest, TensorSpec
from llmos.pack.weights import EXTRA_KEY as WEIGHTS_KEY
from llmos.text.tokenizer import TextTokenizer

log = logging.getLogger(__name__)

KINDS = ("tensor", "embedding", "causal-lm")
QUANTIZATIONS = ("none", "int8", "fp16")
ONNX_ENTRYPOINT = "model.onnx"
TORCHSCRIPT_ENTRYPOINT = "model.pt"
TOKENIZER_FILE = "tokenizer.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class PackSpec:
    """What to call the pack and how to pack it."""

    name: str
    version: str = "1"
    kind: str = "tensor"
    quantization: str = "none"  # none | int8 | fp16 (ONNX only)
    keep_float_after: tuple[str, ...] = ()  # int8: MatMuls fed by these op types stay float
    tokenizer: Path | None = None  # embedding packs: the model's tokenizer.json
    max_length: int = 256  # embedding packs: longer texts are truncated to this many tokens
    source: str = ""  # what the pack was made from, for people
    files: Mapping[str, bytes] = field(default_factory=dict)  # more files to carry
    extra: Mapping[str, Any] = field(default_factory=dict)  # more manifest.extra entries
    level: int = container.LEVEL  # zstd level
    # Store the payload uncompressed where zstd keeps more than this share of its size
    # (1.0: always compress; 0: never).
    max_ratio: float = container.MAX_RATIO

    def check(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError(f"pack name {self.name!r} is not allowed",
                              "use letters, digits, '.', '_' and '-' (it names URLs and files)")
        if self.kind not in KINDS:
            raise ConfigError(f"unknown kind {self.kind!r}", f"one of {', '.join(KINDS)}")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"unknown quantization {self.quantization!r}",
                              f"one of {', '.join(QUANTIZATIONS)}")
        if self.kind == "embedding" and self.tokenizer is None:
            raise ConfigError("an embedding pack needs the model's tokenizer",
                              "pass --tokenizer PATH/tokenizer.json")
        if self.max_length <= 0:
            raise ConfigError(f"max_length must be > 0, got {self.max_length}",
                              "pass --max-length N")


@dataclass(frozen=True)
class BuiltPack:
    """A plain pack in memory."""

    manifest: Manifest
    blob: bytes

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, [self.blob])


def _specs(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]


def embedding_dim(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> int:
    """The vector size of an encoder graph that fits the embedding kind; else ModelLoadError."""
    names = {s.name: s for s in inputs}
    allowed = set(embedding.ENCODER_INPUTS) | set(embedding.OPTIONAL_INPUTS)
    fits = (set(embedding.ENCODER_INPUTS) <= set(names) and set(names) <= allowed
            and all(s.datatype == "INT64" and len(s.shape) == 2 for s in inputs)
            and len(outputs) == 1 and outputs[0].datatype == "FP32"
            and len(outputs[0].shape) == 2 and outputs[0].shape[1] > 0)
    if not fits:
        shown = [f"{s.name} {s.datatype} {list(s.shape)}" for s in (*inputs, *outputs)]
        raise ModelLoadError(
            f"the graph does not fit the embedding kind: {shown}",
            f"an embedding graph takes INT64 {list(embedding.ENCODER_INPUTS)} [batch, sequence] "
            "(optionally token_type_ids) and returns one FP32 [batch, dim] output")
    return outputs[0].shape[1]


def _tokenizer(spec: PackSpec, dim: int) -> tuple[dict[str, bytes], dict[str, Any]]:
    assert spec.tokenizer is not None  # PackSpec.check
    try:
        data = spec.tokenizer.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read tokenizer {spec.tokenizer}: {exc.strerror}",
                          "pass the model's tokenizer.json") from exc
    TextTokenizer.from_json(data, spec.max_length)  # fail now, not on the appliance
    cfg = embedding.EmbeddingConfig(TOKENIZER_FILE, spec.max_length, dim)
    return {TOKENIZER_FILE: data}, {embedding.EXTRA_KEY: cfg.to_extra()}


def assemble(spec: PackSpec, *, runtime: str, entrypoint: str, files: Mapping[str, bytes],
             inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
             extra: Mapping[str, Any]) -> BuiltPack:
    """Payload, compression and manifest: the part every pack shares."""
    entries, payload = container.build_payload({**files, **spec.files})
    log.info("%s: compressing %.1f MB (zstd level %d)", spec.name, len(payload) / 1e6,
             spec.level)
    compression, compressed = container.choose(payload, spec.level, spec.max_ratio)
    manifest = Manifest(
        name=spec.name, version=spec.version, kind=spec.kind, runtime=runtime,
        inputs=tuple(inputs), outputs=tuple(outputs), files=entries,
        sha256=hashlib.sha256(payload).hexdigest(), size_plain=len(payload),
        size_packed=len(compressed), quantization=spec.quantization, entrypoint=entrypoint,
        source=spec.source, extra={"packer": f"llmos {__version__}", **extra, **spec.extra},
        compression=compression,
    )
    manifest.validate()
    log.info("%s: %d files, %.1f MB -> %.1f MB packed (%s)", spec.name, len(entries),
             manifest.size_plain / 1e6, manifest.size_packed / 1e6, compression)
    return BuiltPack(manifest, container.encode(manifest, compressed))


def pack_onnx(model: Path, spec: PackSpec, reference: Path | None = None) -> BuiltPack:
    """Pack an ONNX model. ``reference`` receives the model as it went into the pack
    (quantised or converted, weights inline): a plaintext file for build-machine tests."""
    from llmos.pack import onnx_build  # the build-side adapter (onnx, quantisation tools)

    spec.check()
    prepared = onnx_build.load_model(model)
    size_source = prepared.ByteSize()
    extra: dict[str, Any] = {"size_source": size_source}
    if spec.quantization == "int8":
        log.info("%s: int8 dynamic quantisation of %s", spec.name, model.name)
        prepared, extra["int8"] = onnx_build.quantize_int8(prepared, spec.keep_float_after)
    elif spec.quantization == "fp16":
        log.info("%s: float16 conversion of %s", spec.name, model.name)
        prepared = onnx_build.to_fp16(prepared)
    if reference is not None:
        onnx_build.save_model(prepared, reference)
    graph_inputs, graph_outputs = onnx_build.signature(prepared)
    prepacked = onnx_build.prepacked_weights(prepared)
    graph, weights, table = onnx_build.split_weights(prepared, first=set(prepacked))
    table = replace(table, prepacked=tuple(n for n in prepacked
                                           if n in {e.name for e in table.entries}))
    files = {ONNX_ENTRYPOINT: graph}
    if table.entries:
        files[table.file] = weights
        extra[WEIGHTS_KEY] = table.to_extra()
    inputs, outputs = graph_inputs, graph_outputs
    if spec.kind == "embedding":
        dim = embedding_dim(graph_inputs, graph_outputs)
        more_files, more_extra = _tokenizer(spec, dim)
        files.update(more_files)
        extra.update(more_extra)
        extra["graph"] = {"inputs": _specs(graph_inputs), "outputs": _specs(graph_outputs)}
        inputs, outputs = embedding.public_inputs(), embedding.public_outputs(dim)
    log.info("%s: graph %.1f kB, %d weights in %s (%.1f MB)", spec.name, len(graph) / 1e3,
             len(table.entries), table.file, len(weights) / 1e6)
    return assemble(spec, runtime="onnx", entrypoint=ONNX_ENTRYPOINT, files=files,
                    inputs=inputs, outputs=outputs, extra=extra)


def pack_torchscript(module: bytes, spec: PackSpec, *, inputs: Sequence[TensorSpec] = (),
                     outputs: Sequence[TensorSpec] = (), dim: int | None = None) -> BuiltPack:
    """Pack a ``torch.jit.save``'d module. A ``tensor`` pack declares its ``inputs`` and
    ``outputs`` (TorchScript cannot be asked); an ``embedding`` pack gives its ``dim``."""
    spec.check()
    if spec.quantization != "none":
        raise ConfigError("TorchScript packs are stored as they are",
                          "quantise the module before scripting it, or pack ONNX")
    files = {TORCHSCRIPT_ENTRYPOINT: module}
    extra: dict[str, Any] = {"size_source": len(module)}
    if spec.kind == "embedding":
        if dim is None or dim <= 0:
            raise LlmosError("an embedding TorchScript pack needs its vector size (dim)",
                             "pass dim=, the model's hidden size")
        more_files, more_extra = _tokenizer(spec, dim)
        files.update(more_files)
        extra.update(more_extra)
        inputs, outputs = embedding.public_inputs(), embedding.public_outputs(dim)
    elif not inputs or not outputs:
        raise LlmosError("a TorchScript tensor pack must declare its inputs and outputs",
                         "pass inputs= and outputs= (names, v2 datatypes, shapes)")
    return assemble(spec, runtime="torchscript", entrypoint=TORCHSCRIPT_ENTRYPOINT,
                    files=files, inputs=inputs, outputs=outputs, extra=extra)
