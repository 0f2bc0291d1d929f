"""``llmos keygen``: make a fresh fleet key file (mode 0600; never overwrites)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llmos.vault.keys import generate_kek, write_keyfile


def run(args: argparse.Namespace) -> int:
    kek = generate_kek()
    write_keyfile(args.out, kek)
    print(f"wrote fleet key {kek.id} to {args.out} (mode 0600); keep it offline: "
          "it opens every pack sealed with it")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("keygen", help="make a fresh fleet key file")
    p.add_argument("--out", type=Path, required=True, help="key file to create")
    p.set_defaults(func=run)
