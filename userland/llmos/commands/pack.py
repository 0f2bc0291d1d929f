"""``llmos pack``: turn an ONNX model into a plain pack (seal it with ``llmos seal``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llmos.pack.packer import KINDS, QUANTIZATIONS, PackSpec


def run(args: argparse.Namespace) -> int:
    from llmos.pack.packer import pack_onnx  # the onnx package: build machines only

    spec = PackSpec(name=args.name, version=args.version, kind=args.kind,
                    quantization=args.quantize, tokenizer=args.tokenizer,
                    max_length=args.max_length,
                    keep_float_after=tuple(args.keep_float_after or ()),
                    source=args.source if args.source is not None else args.model.name)
    out: Path = args.out or Path(f"{args.name}.llmpack")
    built = pack_onnx(args.model, spec)
    built.write(out)
    m = built.manifest
    print(f"packed {m.name!r} {m.version} ({m.kind}, {m.quantization}): "
          f"{m.extra.get('size_source', 0) / 1e6:.1f} MB model -> "
          f"{m.size_plain / 1e6:.1f} MB plain -> {m.size_packed / 1e6:.1f} MB packed "
          f"-> {out} (sha256 {m.sha256[:16]}...)")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "pack", help="pack an ONNX model: quantise, compress, describe (no key involved)")
    p.add_argument("model", type=Path, help="an .onnx file (external data files beside it)")
    p.add_argument("--name", required=True, help="model name in the API")
    p.add_argument("--version", default="1", help="model version (default 1)")
    p.add_argument("--kind", choices=KINDS[:2], default="tensor",
                   help="tensor: the graph's inputs and outputs; embedding: text in, "
                        "vectors out (needs --tokenizer)")
    p.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                   help="int8: dynamic quantisation of MatMul/Gather weights; fp16: float16")
    p.add_argument("--keep-float-after", action="append", metavar="OP",
                   help="int8: keep MatMuls fed by this op type in float "
                        "(e.g. LayerNormalization); repeatable")
    p.add_argument("--tokenizer", type=Path, help="embedding: the model's tokenizer.json")
    p.add_argument("--max-length", type=int, default=256,
                   help="embedding: longest token sequence (default 256)")
    p.add_argument("--source", help="what the model is, for people (default: file name)")
    p.add_argument("--out", type=Path, help="pack to write (default NAME.llmpack)")
    p.set_defaults(func=run)
