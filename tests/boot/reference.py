"""Host-side truth for the boot tests: what the image's packs compute and contain.

The reference embedding comes from the very sealed pack the image carries, opened in this
process with the fleet key through llmos's own API; the plaintext fragments come from the
same packs' decrypted payload, to look for on the VM disks afterwards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmos.commands import golden
from llmos.pack.container import split_files
from llmos.vault.keyfile import read_keyfile
from llmos.vault.sealed import SealedPack, open_payload

BLOCK = 4096  # a leaked file lands on disk in blocks: keep fragments inside one


def embed(sealed: Path, key: Path, texts: list[str]) -> np.ndarray:
    return golden.embed(SealedPack.open(sealed), key, texts)


def plaintext_fragments(sealed: Path, key: Path, count: int = 8, size: int = 64
                        ) -> list[bytes]:
    """``count`` high-entropy ``size``-byte pieces of the pack's largest file (the weights),
    spread over its middle, each inside one 4 KiB block of the file."""
    pack = SealedPack.open(sealed)
    files = split_files(pack.manifest, open_payload(pack, read_keyfile(key)))
    weights = max(files.values(), key=len)
    fragments: list[bytes] = []
    n = len(weights)
    for i in range(count * 4):
        if len(fragments) == count:
            break
        pos = n // 10 + (8 * n // 10) * i // (count * 4)
        pos -= pos % BLOCK  # the start of a block: the piece cannot straddle two
        piece = bytes(weights[pos + 512:pos + 512 + size])
        if len(set(piece)) >= size // 2 and piece not in fragments:
            fragments.append(piece)
    return fragments


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out: np.ndarray = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1)
                                             * np.linalg.norm(b64, axis=1))
    return out
