"""``llmos inspect``: print the manifest of a plain or sealed pack (no key needed)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from llmos.pack.describe import describe
from llmos.vault import format as fmt
from llmos.vault.sealed import SealedPack, read_manifest


def _sealed_ids(path: Path) -> dict[str, Any] | None:
    with path.open("rb") as f:
        if not fmt.is_sealed(f.read(len(fmt.MAGIC))):
            return None
    pack = SealedPack.open(path)
    return {"kek_id": pack.kek_id, "pack_id": pack.pack_id}


def run(args: argparse.Namespace) -> int:
    manifest = read_manifest(args.pack)
    sealed = _sealed_ids(args.pack)
    if args.json:
        doc = {"file": str(args.pack), "sealed": sealed, "manifest": manifest.to_dict()}
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(describe(manifest, sealed))
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "inspect", help="print a pack's manifest (plain or sealed; no key needed)")
    p.add_argument("pack", type=Path, help="a .llmpack or .sealed file")
    p.add_argument("--json", action="store_true", help="the manifest as JSON, for machines")
    p.set_defaults(func=run)
