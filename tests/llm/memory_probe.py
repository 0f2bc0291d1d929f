"""Run in a fresh process: load a causal-LM pack the way the supervisor does (pinned pool,
optionally releasing what onnxruntime prepacked) and print the resident growth as JSON."""

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


def main(pack: str, release: str, threads: str) -> None:
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
    main(*sys.argv[1:4])
