"""What compression costs: perplexity and pack size of SmolLM2 variants.

Perplexity is measured on held-out English text from a Debian corpus package
(``fortunes-min``: ``/usr/share/games/fortunes/literature``, quotations from literature),
in non-overlapping windows, each read from an empty cache, with the packs' own graph
(``logits_to_keep`` = the window) on onnxruntime. transformers on the float32 weights
gives the reference figure the float32 pack must match.

Variants: float32; int4-exact as served (the GGUF's 4-bit and 8-bit grids kept, float32
compute; see bench/llm_agreement.py for why); int8 (8-bit weight blocks, int8 compute) and
classic dynamic int8 (one activation scale per tensor); int4 (weight blocks of 32); float32 with
unstructured magnitude pruning of the projection matrices at 30 % and 50 % sparsity
(the zeros only pay off once zstd compresses the pack). Results:
``bench/results/llm_quality.md``.

    .venv/bin/python -m bench.llm_quality [--windows 8] [--window 256]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.llm_bench import THREADS, RawLoop, load_pack, publish
from llmos.demo.smollm2 import SmolLM2, plain_pack
from llmos.llm.model import with_prepacking
from llmos.pack.llm.architecture import (
    INPUT_IDS,
    LOGITS_TO_KEEP,
    POSITION_IDS,
    SEQLENS_K,
    TOTAL_SEQUENCE_LENGTH,
)
from llmos.pack.llm.packinfo import LLMInfo
from llmos.runtimes.base import RuntimeOptions
from llmos.text.tokenizer import Tokenizer

log = logging.getLogger("bench.llm_quality")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "llm_quality.md"
CORPUS = Path("/usr/share/games/fortunes/literature")


@dataclass(frozen=True)
class Variant:
    label: str
    pack: str  # demo pack name
    method: str  # llmos.pack.llm.compress method
    builder: SmolLM2 | None = None  # None: one of the demo variants


VARIANTS = (
    Variant("float32", "smollm2-fp32", "none"),
    Variant("int4-exact: the GGUF's own grids, float32 compute (served)", "smollm2",
            "int4-exact"),
    Variant("int8: 8-bit weight blocks, int8 compute", "smollm2-int8", "int8"),
    Variant("int8: classic dynamic, one activation scale per tensor", "smollm2-int8-dynamic",
            "int8-dynamic"),
    Variant("int4: 4-bit weight blocks", "smollm2-int4", "int4"),
    Variant("float32, 30 % magnitude-pruned", "smollm2-pruned30", "none-pruned30",
            SmolLM2("none", 0.3, level=3)),
    Variant("float32, 50 % magnitude-pruned", "smollm2-pruned50", "none-pruned50",
            SmolLM2("none", 0.5, level=3)),
)


@dataclass(frozen=True)
class Row:
    label: str
    quantization: str
    perplexity: float
    size_plain: int
    size_packed: int
    zstd_level: int
    export_s: float | None


def corpus_text(path: Path = CORPUS) -> str:
    """The quotations, one paragraph each (the file separates them with '%' lines)."""
    quotes = [q.strip() for q in path.read_text(encoding="utf-8").split("\n%\n")]
    return "\n\n".join(q for q in quotes if q)


def windows(ids: Sequence[int], size: int, count: int) -> list[list[int]]:
    found = [list(ids[i:i + size]) for i in range(0, len(ids) - size + 1, size)][:count]
    if len(found) < count:
        raise SystemExit(f"the corpus has {len(ids)} tokens, fewer than {count} x {size}")
    return found


def nll(logits: np.ndarray, targets: np.ndarray) -> float:
    """Summed negative log-likelihood of ``targets`` under ``logits`` [n, vocab] (pure)."""
    x = logits.astype(np.float64)
    top = x.max(axis=-1, keepdims=True)
    logz = np.log(np.exp(x - top).sum(axis=-1)) + top[:, 0]
    return float((logz - x[np.arange(len(targets)), targets]).sum())


def onnx_perplexity(loop: RawLoop, chunks: Sequence[Sequence[int]]) -> float:
    total, count = 0.0, 0
    spec = loop.spec
    for chunk in chunks:
        n = len(chunk)
        caches = [np.zeros((1, spec.num_kv_heads, n, spec.head_dim), np.float32)
                  for _ in range(2 * spec.num_layers)]
        logits = np.zeros((1, n, spec.vocab_size), np.float32)
        feeds = {INPUT_IDS: np.asarray([chunk], np.int64),
                 POSITION_IDS: np.arange(n, dtype=np.int64)[None],
                 SEQLENS_K: np.array([n - 1], np.int32),
                 TOTAL_SEQUENCE_LENGTH: np.array(n, np.int32),
                 LOGITS_TO_KEEP: np.array([n], np.int64)}
        loop.session.run_with_iobinding(loop.bind(caches, slice(0, 1), feeds, logits))
        total += nll(logits[0, :-1], np.asarray(chunk[1:]))
        count += n - 1
    return math.exp(total / count)


def hf_perplexity(folder: Path, chunks: Sequence[Sequence[int]]) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    total, count = 0.0, 0
    with torch.inference_mode():
        for chunk in chunks:
            logits = model(torch.tensor([list(chunk)])).logits[0].numpy()
            total += nll(logits[:-1], np.asarray(chunk[1:]))
            count += len(chunk) - 1
    return math.exp(total / count)


def export_seconds(work: Path, method: str) -> float | None:
    """How long the cached export took when it was made (its export.json)."""
    for meta in sorted((work / "smollm2").glob(f"*-{method}-[0-9a-f]*/export.json")):
        seconds = json.loads(meta.read_text()).get("seconds")
        return float(seconds) if seconds else None
    return None


def measure(variant: Variant, demo: Path, chunks: Sequence[Sequence[int]]) -> Row:
    from llmos.runtimes.onnx import open_session

    pack = plain_pack(variant.pack, demo, variant.builder)
    manifest, files = load_pack(pack)
    info = LLMInfo.of(manifest.extra)
    session = open_session(manifest, files, with_prepacking(RuntimeOptions(
        intra_op_threads=THREADS)))
    ppl = onnx_perplexity(RawLoop(session, info.decoder, info.context_length, 0), chunks)
    level = (variant.builder.level if variant.builder else
             {"smollm2-fp32": 3}.get(variant.pack, 12))
    row = Row(variant.label, manifest.quantization, ppl, manifest.size_plain,
              manifest.size_packed, level, export_seconds(demo / "work", variant.method))
    log.info("%s: perplexity %.3f, %.1f MB packed", variant.label, ppl, row.size_packed / 1e6)
    return row


def report(rows: Sequence[Row], reference: float | None, tokens: int, size: int) -> str:
    base = rows[0]
    lines = ["# What compression costs: SmolLM2-135M-Instruct", "",
             f"Perplexity on `{CORPUS}` (Debian `fortunes-min`), {tokens} tokens in "
             f"windows of {size}, each from an empty cache; lower is better. Sizes are the "
             "pack's payload before and after zstd.", "",
             "| variant | perplexity | vs float32 | plain MB | packed MB | zstd level | "
             "packed vs float32 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        delta = "=" if r is base else f"{r.perplexity / base.perplexity - 1:+.1%}"
        lines.append(
            f"| {r.label} | {r.perplexity:.3f} | {delta} | {r.size_plain / 1e6:.1f} "
            f"| {r.size_packed / 1e6:.1f} | {r.zstd_level} "
            f"| {r.size_packed / base.size_packed:.2f}x |")
    if reference is not None:
        lines += ["", f"transformers on the same float32 weights: perplexity {reference:.3f} "
                  f"(the float32 pack differs by {abs(rows[0].perplexity - reference):.4f})."]
    exports = [(r.label, r.export_s) for r in rows if r.export_s]
    if exports:
        lines += ["", "Export time (GGUF dequantised once before; 2 cores, other work running): " +
                  ", ".join(f"{label} {s:.0f} s" for label, s in exports) + "."]
    lines += ["", "Pruned variants zero the smallest-magnitude weights of every attention and "
              "MLP projection (embeddings and norms untouched) and stay float32; they only "
              "shrink once compressed. The pruned packs use zstd level 3, the others "
              "llmos.pack.container.LEVEL (the zstd level column).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--demo", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--no-transformers", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    pack = plain_pack("smollm2", args.demo)
    _, files = load_pack(pack)
    tokenizer = Tokenizer(files["tokenizer.json"])
    chunks = windows(tokenizer.encode(corpus_text()), args.window, args.windows)
    rows = [measure(v, args.demo, chunks) for v in VARIANTS]
    reference = None
    if not args.no_transformers:
        folder = sorted((args.demo / "work" / "smollm2").glob("*.hf"))[0]
        reference = hf_perplexity(folder, chunks)
    text = report(rows, reference, args.windows * args.window, args.window)
    publish(text, args.out)
    log.info("load average %.1f (%d cores)", os.getloadavg()[0], os.cpu_count() or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
