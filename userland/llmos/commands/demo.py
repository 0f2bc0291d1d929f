"""``llmos demo``: build and seal the bundled demo packs, or list them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llmos.demo.catalog import CATALOG


def build(args: argparse.Namespace) -> int:
    from llmos.demo.build import build as build_packs
    from llmos.vault.keys import read_keyfile

    packs = build_packs(args.out, read_keyfile(args.key), args.only)
    for p in packs:
        done = "built and sealed" if p.built else "sealed" if p.resealed else "up to date"
        print(f"{p.name:<14} {done:<17} {p.sealed}")
    return 0


def show(_args: argparse.Namespace) -> int:
    for e in CATALOG:
        state = "" if e.available() else "  (not in this build)"
        print(f"{e.name:<14} {e.summary}{state}")
    return 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("demo", help="the bundled demo models")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = actions.add_parser("build", help="build missing or outdated demo packs and seal them")
    b.add_argument("--out", type=Path, required=True, help="folder for the packs")
    b.add_argument("--key", type=Path, required=True, help="fleet key file ('llmos keygen')")
    b.add_argument("--only", nargs="+", metavar="NAME", help="build only these demo packs")
    b.set_defaults(func=build)
    ls = actions.add_parser("list", help="list the demo packs")
    ls.set_defaults(func=show)
