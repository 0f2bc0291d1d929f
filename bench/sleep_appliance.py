"""A fixed-latency test model served by a real ``llmos serve`` (bench fixture, not shipped).

``write_pack`` seals a tiny pack named ``sleep`` (text in, an 8-wide vector out). Served by
``python -m bench.sleep_appliance --latency-ms L -- serve ARGS``, which plugs a runtime
into the loader for that pack only: each ``infer`` sleeps L ms, then returns one vector per
text (a hash of it, so answers can be checked). Everything else is the real server:
sealed pack, vault, batcher, HTTP, API keys. The image never contains this runtime.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from llmos.pack import container
from llmos.pack.manifest import Manifest, TensorSpec
from llmos.vault.kek import Kek
from llmos.vault.sealed import seal

NAME = "sleep"
WIDTH = 8
INPUTS = (TensorSpec("text", "BYTES", (-1,)),)
OUTPUTS = (TensorSpec("embedding", "FP32", (-1, WIDTH)),)


def vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255 for b in digest[:WIDTH]]


def write_pack(path: Path, kek: Kek) -> Path:
    entries, payload = container.build_payload({"model.onnx": b"sleep: no weights"})
    compressed = container.compress(payload, level=3)
    manifest = Manifest(name=NAME, version="1", kind="tensor", runtime="onnx", inputs=INPUTS,
                        outputs=OUTPUTS, files=entries,
                        sha256=hashlib.sha256(payload).hexdigest(),
                        size_plain=len(payload), size_packed=len(compressed),
                        source="bench fixture: fixed latency")
    path.write_bytes(seal(manifest, compressed, kek, chunk_size=4096))
    return path


class SleepRuntime:
    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return INPUTS

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return OUTPUTS

    @property
    def batchable(self) -> bool:
        return True

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.latency_s)
        texts = [t.decode() if isinstance(t, bytes) else str(t) for t in inputs["text"].ravel()]
        return {"embedding": np.array([vector(t) for t in texts], np.float32).reshape(-1, WIDTH)}

    def close(self) -> None:
        pass


def plug_in(latency_s: float) -> None:
    from llmos.runtimes import loader

    real = loader.load_runtime

    def load_runtime(manifest: Manifest, files: Mapping[str, memoryview], options: Any) -> Any:
        if manifest.name == NAME:
            return SleepRuntime(latency_s)
        return real(manifest, files, options)

    loader.load_runtime = load_runtime


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--latency-ms", type=float, required=True)
    p.add_argument("llmos_args", nargs=argparse.REMAINDER, help="-- serve --config FILE")
    args = p.parse_args(argv)
    plug_in(args.latency_ms / 1000)
    from llmos.cli import main as llmos_main

    rest = args.llmos_args[1:] if args.llmos_args[:1] == ["--"] else args.llmos_args
    return llmos_main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
