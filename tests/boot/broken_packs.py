"""Copies of the image's sealed packs with one byte of each ciphertext flipped: what a
version whose packs were damaged on the way carries (tests/boot/test_update.py, version 3).
Every such pack fails its authentication when opened, so that version cannot serve.

    python tests/boot/broken_packs.py --out DIR PACK.sealed...

(make update-images passes the packs image/stage_packs.py selects from image/packs.list.)
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("packs", type=Path, nargs="+", metavar="PACK")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for src in args.packs:
        dest = args.out / src.name
        if dest.exists() and dest.stat().st_mtime >= src.stat().st_mtime:
            continue
        shutil.copyfile(src, dest)
        with dest.open("r+b") as f:
            f.seek(dest.stat().st_size * 3 // 4)  # inside the ciphertext, past the header
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x01]))
        print(f"broken_packs: {dest} (one byte flipped)")


if __name__ == "__main__":
    main()
