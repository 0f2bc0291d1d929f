"""Run in a fresh process: load a causal-LM pack the way the supervisor does (pinned pool,
optionally releasing what onnxruntime prepacked) and print the resident growth as JSON.

With a second pack given, that model is loaded first and kept, as the supervisor keeps its
other models: the libraries' one-time costs (onnxruntime's kernel registry and thread
pools, the tokenizer library's allocator) are paid before the measurement, not by it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil

from llmos.hw.memory import MemoryPool
from llmos.llm.engine import EngineLimits
from llmos.llm.model import load_language_model
from llmos.pack import container
from llmos.runtimes.base import RuntimeOptions
from llmos.runtimes.loader import load_runtime
from llmos.serving.warmup import sample_inputs


def main(pack: str, release: str, threads: str, first: str = "") -> None:
    if first:
        m, c = container.read_pack(Path(first))
        other = load_runtime(m, container.split_files(m, container.decompress_into([c], m)),
                             RuntimeOptions(intra_op_threads=int(threads)))
        other.infer(sample_inputs(other.inputs))
    manifest, compressed = container.read_pack(Path(pack))
    pool = MemoryPool(pin=True)
    before = psutil.Process().memory_info().rss
    payload = container.decompress_into([compressed], manifest, pool.allocator("m"))
    lm = load_language_model(manifest, container.split_files(manifest, payload),
                             RuntimeOptions(intra_op_threads=int(threads)), EngineLimits(),
                             release=pool.releaser("m") if release == "1" else None)
    grown = psutil.Process().memory_info().rss - before
    print(json.dumps({"grown": grown, "plain": manifest.size_plain,
                      "released": pool.usage()[0].released_bytes}))
    lm.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
