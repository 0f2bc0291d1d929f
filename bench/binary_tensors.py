"""OIP v2 request decoding and response encoding: JSON against the binary tensor extension,
side by side in one run (the server's codec only: no HTTP, no model).

    python -m bench.binary_tensors [--repeat 20]

Prints a Markdown table: for each FP32 tensor size, the body's bytes and the best time of
``--repeat`` runs of ``binary_tensors.decode_request`` and ``encode_response`` with the
tensor as JSON and as raw bytes, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from llmos.serving import binary_tensors as bt

SHAPES = ((1, 384), (32, 384), (64, 4096))


@dataclass(frozen=True)
class Row:
    shape: tuple[int, int]
    json_bytes: int
    binary_bytes: int
    decode_json_s: float
    decode_binary_s: float
    encode_json_s: float
    encode_binary_s: float


def best_of(call: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def bodies(x: np.ndarray) -> tuple[bytes, bytes, str]:
    """(JSON body, binary body, its Inference-Header-Content-Length) for input ``x``."""
    spec = {"name": "x", "datatype": "FP32", "shape": list(x.shape)}
    as_json = json.dumps({"inputs": [{**spec, "data": x.ravel().tolist()}]}).encode()
    head = json.dumps({"inputs": [{**spec, "parameters": {"binary_data_size": x.nbytes}}]}
                      ).encode()
    return as_json, head + x.tobytes(), str(len(head))


def measure(shape: tuple[int, int], repeat: int) -> Row:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    as_json, as_binary, header = bodies(x)
    outputs = {"y": x}
    return Row(
        shape, len(as_json), len(as_binary),
        best_of(lambda: bt.decode_request(as_json, None), repeat),
        best_of(lambda: bt.decode_request(as_binary, header), repeat),
        best_of(lambda: bt.encode_response("m", "1", None, outputs, ["y"], lambda n: False),
                repeat),
        best_of(lambda: bt.encode_response("m", "1", None, outputs, ["y"], lambda n: True),
                repeat))


def table(rows: Sequence[Row]) -> str:
    lines = ["| FP32 tensor | body JSON / binary | decode JSON | decode binary | ratio "
             "| encode JSON | encode binary | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.shape[0]}x{r.shape[1]} | {r.json_bytes:,} / {r.binary_bytes:,} B "
            f"| {r.decode_json_s * 1e3:.3f} ms | {r.decode_binary_s * 1e3:.3f} ms "
            f"| {r.decode_json_s / r.decode_binary_s:.0f}x "
            f"| {r.encode_json_s * 1e3:.3f} ms | {r.encode_binary_s * 1e3:.3f} ms "
            f"| {r.encode_json_s / r.encode_binary_s:.0f}x |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.binary_tensors", description=__doc__)
    p.add_argument("--repeat", type=int, default=20, help="runs per cell (best is kept)")
    args = p.parse_args(argv)
    print(table([measure(s, args.repeat) for s in SHAPES]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
