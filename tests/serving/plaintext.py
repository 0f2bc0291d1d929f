"""Search writable places for a fragment of a model's plaintext (it must never be on disk)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

MAX_FILE = 512 * 1024 * 1024
CHUNK = 1 << 20


def _files(root: Path, since: float) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _e: None):
        dirnames[:] = [d for d in dirnames if not Path(dirpath, d).is_symlink()]
        for name in filenames:
            path = Path(dirpath, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            if path.is_file() and not path.is_symlink() and st.st_mtime >= since \
                    and st.st_size <= MAX_FILE:
                yield path


def contains(path: Path, *fragments: bytes) -> bool:
    """Whether the file holds any of ``fragments``."""
    overlap = max(len(f) for f in fragments)
    tail = b""
    try:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                window = tail + chunk
                if any(frag in window for frag in fragments):
                    return True
                tail = chunk[-overlap:]
    except OSError:
        return False
    return False


def files_with(fragments: Sequence[bytes], roots: Iterable[Path], since: float) -> list[Path]:
    """Files under ``roots`` written since ``since`` (a time.time()) holding a fragment."""
    seen: set[Path] = set()
    hits: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in _files(root, since):
            if path not in seen:
                seen.add(path)
                if contains(path, *fragments):
                    hits.append(path)
    return hits
