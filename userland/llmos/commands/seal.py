"""``llmos seal``: encrypt a plain pack for a fleet key."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llmos.vault.keys import read_keyfile
from llmos.vault.sealed import SealedPack, seal_pack_file


def run(args: argparse.Namespace) -> int:
    out: Path = args.out or args.pack.with_name(args.pack.name + ".sealed")
    kek = read_keyfile(args.key)
    manifest = seal_pack_file(args.pack, out, kek)
    sealed = SealedPack.open(out)
    print(f"sealed {manifest.name!r} {manifest.version} -> {out} ({out.stat().st_size} bytes, "
          f"{sealed.header.chunk_count} chunks, pack id {sealed.pack_id}) "
          f"for fleet key {kek.id}")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "seal", help="encrypt a pack for the fleet key (AES-256-GCM, authenticated chunks)")
    p.add_argument("pack", type=Path, help="plain pack made by 'llmos pack'")
    p.add_argument("--out", type=Path, help="sealed pack to write (default: PACK.sealed)")
    p.add_argument("--key", type=Path, required=True, help="fleet key file ('llmos keygen')")
    p.set_defaults(func=run)
