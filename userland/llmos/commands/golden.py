"""``llmos golden``: the golden requests of an image, computed from its sealed packs.

Run on the build host by image/build.sh on the packs the image carries (chosen from
image/packs.list by image/stage_packs.py): each is opened with the fleet key, as the
appliance will, and its runtime loaded in this process: an embedding model's reference vector for a
fixed text is computed here; a language model gets a fixed prompt (any answer passes). The
result is the golden file ``llmos health-gate`` checks on a new version's first boots.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from llmos.files import atomic_write
from llmos.osupdate import golden
from llmos.pack.container import split_files
from llmos.runtimes.base import RuntimeOptions
from llmos.runtimes.loader import load_runtime
from llmos.vault.keys import read_keyfile
from llmos.vault.sealed import SealedPack, open_payload


def embed(pack: SealedPack, key: Path, texts: list[str]) -> np.ndarray:
    """The pack's embeddings of ``texts`` (one row each), computed by its own runtime in
    this process (its first input and output: a text-in, vector-out model)."""
    manifest = pack.manifest
    files = split_files(manifest, open_payload(pack, read_keyfile(key)))
    runtime = load_runtime(manifest, files, RuntimeOptions())
    try:
        out = runtime.infer({manifest.inputs[0].name: np.array(texts, dtype=object)})
        return np.asarray(out[manifest.outputs[0].name])
    finally:
        runtime.close()


def reference_vector(pack: SealedPack, key: Path, text: str) -> tuple[float, ...]:
    """The pack's embedding of ``text``."""
    vector = np.asarray(embed(pack, key, [text]), dtype=np.float64).reshape(-1)
    return tuple(float(x) for x in vector)


def check_for(pack: SealedPack, key: Path) -> golden.Check | None:
    m = pack.manifest
    kind = golden.check_kind(m.kind, [(t.name, t.datatype) for t in m.inputs])
    if kind == "chat":
        return golden.ChatCheck(m.name, golden.CHAT_PROMPT)
    if kind == "embedding":
        return golden.EmbeddingCheck(m.name, golden.EMBEDDING_TEXT,
                                     reference_vector(pack, key, golden.EMBEDDING_TEXT),
                                     input=m.inputs[0].name, output=m.outputs[0].name)
    return None


def command(args: argparse.Namespace) -> int:
    checks: list[golden.Check] = []
    for path in args.packs:
        pack = SealedPack.open(path)
        name = pack.manifest.name
        check = check_for(pack, args.key)
        if check is None:
            print(f"golden: {name}: a {pack.manifest.kind} model without a text input: "
                  "checked by readiness only")
            continue
        checks.append(check)
        print(f"golden: {name}: {check.kind} check")
    atomic_write(args.out, [golden.dumps(checks).encode()])
    print(f"golden: {len(checks)} checks -> {args.out}")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "golden", help="compute the health gate's golden requests from sealed packs (build)",
        description="Open every pack with the fleet key and write the golden file: a "
                    "reference embedding per embedding model, a prompt per LLM.")
    p.add_argument("packs", type=Path, nargs="+", metavar="PACK", help="sealed pack files")
    p.add_argument("--key", type=Path, required=True, help="the fleet key file")
    p.add_argument("--out", type=Path, required=True, help="the golden file to write")
    p.set_defaults(func=command)
