"""``llmos demo build``: make the demo packs that are missing or outdated, and seal them.

In the output folder each demo ``NAME`` has ``NAME.llmpack`` (the plain pack),
``NAME.llmpack.key`` (the cache key it was built under: its builder's fingerprint and the
packing code) and ``NAME.sealed`` (for the fleet key). ``work/`` keeps the builders'
plaintext intermediates. A pack is rebuilt only when its key changes and sealed again only
when the plain pack or the fleet key changed, so a second run does nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmos.demo.catalog import CATALOG, DemoBuilder, DemoEntry, module_digest
from llmos.errors import ConfigError, LlmosError
from llmos.vault.keys import Kek
from llmos.vault.sealed import SealedPack, read_manifest, seal_pack_file

log = logging.getLogger(__name__)

# The code every pack goes through; a change to any of them rebuilds every demo pack.
PACKING_CODE = ("llmos.pack.container", "llmos.pack.manifest", "llmos.pack.packer",
                "llmos.pack.onnx_build", "llmos.pack.weights", "llmos.pack.embedding",
                "llmos.text.tokenizer")


@dataclass(frozen=True)
class DemoPack:
    """One demo pack after a build: where it is and what this run did to it."""

    name: str
    plain: Path
    sealed: Path
    built: bool  # packed in this run
    resealed: bool  # sealed in this run


def cache_key(entry: DemoEntry, builder: DemoBuilder) -> str:
    code = {m: module_digest(m) for m in (*PACKING_CODE, entry.module)}
    material = {"name": entry.name, "builder": entry.builder,
                "inputs": dict(builder.fingerprint()), "code": code}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def select(only: Sequence[str] | None, entries: Sequence[DemoEntry] | None = None
           ) -> list[DemoEntry]:
    """The entries to build (from ``entries``, default the catalog): the ``only`` ones (each
    must exist and be available), or every available one (absent builders are skipped)."""
    entries = CATALOG if entries is None else entries
    if only:
        by_name = {e.name: e for e in entries}
        unknown = [n for n in only if n not in by_name]
        if unknown:
            raise ConfigError(f"unknown demo pack(s) {unknown}",
                              f"known: {', '.join(by_name)}")
        chosen = [by_name[n] for n in only]
        absent = [e.name for e in chosen if not e.available()]
        if absent:
            raise ConfigError(f"demo pack(s) {absent} are not part of this build",
                              "their builder modules are not installed")
        return chosen
    available = [e for e in entries if e.available()]
    for e in entries:
        if e not in available:
            log.warning("demo %s: its builder %s is not in this build; skipped", e.name,
                        e.module)
    return available


def _sealed_is_current(sealed: Path, plain: Path, kek: Kek) -> bool:
    if not sealed.is_file():
        return False
    try:
        existing = SealedPack.open(sealed)
    except LlmosError:
        return False
    return existing.kek_id == kek.id and existing.manifest == read_manifest(plain)


def _plain_is_current(plain: Path, stamp: Path, key: str) -> bool:
    return plain.is_file() and stamp.is_file() and stamp.read_text() == key


def is_built(entry: DemoEntry, out: Path) -> bool:
    """True when ``out`` holds an up-to-date plain pack for ``entry``."""
    plain, stamp = out / f"{entry.name}.llmpack", out / f"{entry.name}.llmpack.key"
    return _plain_is_current(plain, stamp, cache_key(entry, entry.load()))


def build_one(entry: DemoEntry, out: Path, kek: Kek) -> DemoPack:
    plain, stamp = out / f"{entry.name}.llmpack", out / f"{entry.name}.llmpack.key"
    sealed = out / f"{entry.name}.sealed"
    builder = entry.load()
    key = cache_key(entry, builder)
    built = not _plain_is_current(plain, stamp, key)
    if built:
        log.info("demo %s: building", entry.name)
        builder.build(entry.name, out / "work").write(plain)
        stamp.write_text(key)
    resealed = not _sealed_is_current(sealed, plain, kek)
    if resealed:
        log.info("demo %s: sealing for fleet key %s", entry.name, kek.id)
        seal_pack_file(plain, sealed, kek)
    if not (built or resealed):
        log.info("demo %s: up to date (%s)", entry.name, sealed)
    return DemoPack(entry.name, plain, sealed, built, resealed)


def build(out: Path, kek: Kek, only: Sequence[str] | None = None,
          entries: Sequence[DemoEntry] | None = None) -> list[DemoPack]:
    """Build and seal the selected demo packs into ``out``; only what changed is redone."""
    chosen = select(only, entries)
    out.mkdir(parents=True, exist_ok=True)
    packs = [build_one(e, out, kek) for e in chosen]
    changed = [p.name for p in packs if p.built or p.resealed]
    if changed:
        log.info("demo packs in %s: built %s, sealed %s", out,
                 [p.name for p in packs if p.built] or "none",
                 [p.name for p in packs if p.resealed] or "none")
    else:
        log.info("nothing to do: all %d demo packs in %s are up to date", len(packs), out)
    return packs
