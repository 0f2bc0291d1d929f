"""Resident memory of loading a pack, measured in a fresh process (run as a script).

Prints JSON: the pack's plaintext and weights sizes and the RSS growth, in bytes, of one
more model loaded after a first one (so library and thread-pool start-up are not counted):
``load`` = decompressed payload + runtime (``session``: the ONNX session alone, no
tokenizer), ``infer`` = after one inference on top (runtime mode only).
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path
from typing import Any

import psutil

from llmos.pack import container
from llmos.pack.weights import WeightTable
from llmos.runtimes.base import RuntimeOptions
from llmos.runtimes.loader import load_runtime
from llmos.runtimes.onnx import open_session
from llmos.serving.warmup import sample_inputs


def main(path: Path, mode: str, batch: int) -> None:
    proc = psutil.Process()
    manifest, compressed = container.read_pack(path)
    # Weights used in place: no prepacking (with it ORT keeps its own copy, and the serving
    # side gives the pool's pages back: tests/integration_hw/test_demo_memory.py).
    options = RuntimeOptions(intra_op_threads=1, prepack=False)

    def load() -> tuple[Any, dict[str, memoryview]]:
        files = container.split_files(manifest, container.decompress_into([compressed],
                                                                          manifest))
        if mode == "session":
            return open_session(manifest, files, options), files
        return load_runtime(manifest, files, options), files

    first, _ = load()
    if mode == "runtime":
        inputs = {k: v.repeat(batch, axis=0) for k, v in sample_inputs(first.inputs).items()}
        first.infer(inputs)
    gc.collect()
    base = proc.memory_info().rss
    second, _files = load()
    gc.collect()
    after_load = proc.memory_info().rss
    if mode == "runtime":
        second.infer(inputs)
    after_infer = proc.memory_info().rss
    table = WeightTable.from_extra(manifest.extra)
    print(json.dumps({"plain": manifest.size_plain, "weights": table.size if table else 0,
                      "load": after_load - base, "infer": after_infer - base}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
