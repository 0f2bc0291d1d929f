"""Sealed packs uploaded through the admin page, kept on the data partition.

The image's ``server.packs_dir`` is under ``/usr`` (read-only); uploads go to
``admin.upload_dir`` (default ``<state_dir>/packs``: ``/var/lib/llmos/packs`` on the
appliance, the writable data partition that survives reboots). This module is what the rest
of the server knows about that folder:

- ``clean_leftovers``: an upload streams into ``.upload-*.tmp`` and is renamed into place
  once checked; a crash or power cut in between leaves the temporary file, removed at start;
- ``merge``: the uploaded packs come back at start as models (by the name in their
  manifest; an uploaded pack replaces a configured model of the same name, the newest
  upload of a name wins);
- ``room``: how many bytes an upload may take, the free space less a reserve for the
  journal and the server's state, and never more than ``admin.upload_max_bytes``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from llmos.config import Config, ModelConfig
from llmos.errors import LlmosError
from llmos.vault.sealed import SealedPack

log = logging.getLogger(__name__)

TMP_PREFIX, TMP_SUFFIX, PACK_SUFFIX = ".upload-", ".tmp", ".sealed"
#: Left free on the data partition by uploads: the journal and the server's state need room.
RESERVE_BYTES = 256 * 1024**2


def upload_dir(cfg: Config) -> Path:
    value = cfg.values.get("admin.upload_dir")
    return Path(value) if value else Path(cfg["server.state_dir"]) / "packs"


def temporary_name(token: str) -> str:
    return f"{TMP_PREFIX}{token}{TMP_SUFFIX}"


def clean_leftovers(directory: Path) -> list[Path]:
    """Remove the temporary files of uploads that never finished; the ones removed."""
    removed = []
    for path in sorted(directory.glob(f"{TMP_PREFIX}*{TMP_SUFFIX}")):
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.warning("removed %d unfinished upload(s) from %s", len(removed), directory)
    return removed


def room(directory: Path, limit: int, reserve: int | None = None) -> int:
    """Bytes an upload may take in ``directory`` now: its partition's free space less
    ``reserve`` (default ``RESERVE_BYTES``), at most ``limit``."""
    keep = RESERVE_BYTES if reserve is None else reserve
    return max(0, min(limit, shutil.disk_usage(directory).free - keep))


def _manifest_names(paths: Iterable[Path]) -> dict[str, Path]:
    """Manifest name -> newest pack of that name (a pack that does not open is skipped)."""
    newest: dict[str, Path] = {}
    for path in sorted(paths, key=lambda p: p.stat().st_mtime_ns):
        try:
            name = SealedPack.open(path).manifest.name
        except (LlmosError, OSError) as exc:
            log.warning("uploaded pack %s is skipped: %s", path, exc)
            continue
        newest[name] = path
    return newest


def uploaded(directory: Path) -> dict[str, Path]:
    """The uploaded packs by model name."""
    if not directory.is_dir():
        return {}
    return _manifest_names(directory.glob(f"*{PACK_SUFFIX}"))


def superseded(directory: Path, name: str, keep: Path) -> list[Path]:
    """Remove the other uploaded packs of model ``name`` (older versions); those removed."""
    gone = [p for p in directory.glob(f"*{PACK_SUFFIX}")
            if p != keep and _manifest_names([p]).get(name) == p]
    for path in gone:
        path.unlink(missing_ok=True)
        log.info("removed %s: superseded by %s", path, keep.name)
    return gone


def merge(cfg: Config) -> Config:
    """``cfg`` with the uploaded packs as models, the leftovers of unfinished uploads gone."""
    directory = upload_dir(cfg)
    if not directory.is_dir():
        return cfg
    clean_leftovers(directory)
    packs = uploaded(directory)
    models = [replace(m, pack=packs.pop(m.name)) if m.name in packs else m
              for m in cfg.models]
    models += [ModelConfig(name=name, pack=path) for name, path in sorted(packs.items())]
    for m in models:
        if m.pack.parent == directory:
            log.info("model %s from the uploaded pack %s", m.name, m.pack)
    return Config(values=cfg.values, models=tuple(models), source=cfg.source)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (the upload survives a power cut)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
