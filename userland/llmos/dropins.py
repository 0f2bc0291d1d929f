"""Sealed packs that arrive in the upload folder: installed as models or model updates.

``install`` is what the admin upload does with a pack it has checked and put in place, and
what the folder watch does with one copied there by other means (``scp``, a USB stick, a
configuration tool): a pack of a model that exists updates it (``ModelRegistry.update``: the
new version loads beside the serving one and takes over once warm), one of a new model adds
it. Once it serves, the model's older uploads are removed; if it does not, the pack goes
(the old version serves on, the reason is in the model's status).

``DropFolder`` looks at ``admin.upload_dir`` every ``admin.upload_watch_s`` seconds. What is
there at start is the start-up's (``llmos.vault.uploads.merge``); a ``.sealed`` file that
appears or changes later is taken once it is whole (the length its header promises: copy
under another name and rename, or just wait, a half-copied pack is taken when complete) and
has not changed for ``SETTLE_S``.
A pack that is refused or fails is renamed ``*.sealed.failed``, so a restart does not
take it up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from llmos.config import ModelConfig
from llmos.errors import LlmosError
from llmos.pack.manifest import Manifest
from llmos.registry import ModelRegistry
from llmos.state import ModelStatus, UpdateStatus
from llmos.vault import uploads
from llmos.vault.opener import describe
from llmos.vault.sealed import SealedPack

log = logging.getLogger(__name__)

FAILED_SUFFIX = ".failed"
#: A pack written less than this long ago is left for the next look: it may be an admin
#: upload being installed right now (its own request does that), or a copy still under way.
SETTLE_S = 2.0
Stamp = tuple[int, int]  # (mtime_ns, size): a file that changed is looked at again


def discard(path: Path) -> None:
    path.unlink(missing_ok=True)


def set_aside(path: Path) -> None:
    """Keep a refused pack for the operator to look at, out of the start-up's way."""
    with contextlib.suppress(OSError):
        path.replace(path.with_name(path.name + FAILED_SUFFIX))


async def install(registry: ModelRegistry, manifest: Manifest, pack: Path,
                  drop: Callable[[Path], None] = discard) -> ModelStatus:
    """Serve ``pack`` (checked, in its final place) as model ``manifest.name``; raises the
    model's load or update error after ``drop`` took the pack away."""
    name = manifest.name
    known = name in registry.names()
    cfg = ModelConfig(name=name, pack=pack)
    try:
        status = await (registry.update if known else registry.load)(name, cfg)
    except LlmosError:
        if name not in registry.names() or registry.model_config(name).pack != pack:
            drop(pack)  # the old version serves on; a restart must not take this one
        raise
    await asyncio.to_thread(uploads.superseded, pack.parent, name, pack)
    return status


def whole_manifest(path: Path) -> Manifest | None:
    """The manifest of a complete sealed pack; None while it is still being written."""
    try:
        sealed = SealedPack.open(path)
        if path.stat().st_size != sealed.header.size + sealed.header.body_size:
            return None
        sealed.manifest.validate()
    except (LlmosError, OSError):
        return None
    return sealed.manifest


class DropFolder:
    """Watches one folder for sealed packs (on the event loop; file work in threads)."""

    def __init__(self, registry: ModelRegistry, folder: Path, interval_s: float) -> None:
        self.registry = registry
        self.folder = folder
        self.interval_s = interval_s
        self._seen: dict[Path, Stamp] = {}

    def _stamps(self) -> dict[Path, Stamp]:
        found = {}
        with contextlib.suppress(OSError):
            for path in self.folder.glob(f"*{uploads.PACK_SUFFIX}"):
                with contextlib.suppress(OSError):
                    st = path.stat()
                    found[path] = (st.st_mtime_ns, st.st_size)
        return found

    async def _take(self, path: Path, stamp: Stamp) -> bool:
        """Install ``path`` if it is whole and not already served; False to look again."""
        if time.time_ns() - stamp[0] < SETTLE_S * 1e9:
            return False
        manifest = await asyncio.to_thread(whole_manifest, path)
        if manifest is None:
            return False
        name = manifest.name
        if name in self.registry.names():
            status = self.registry.status(name)
            if self.registry.model_config(name).pack == path:
                return True  # the pack it serves
            if not UpdateStatus.settled(status.update):
                return False  # one update at a time: this one waits its turn
        log.info("pack %s (%s %s) appeared in %s", path.name, name, manifest.version,
                 self.folder)
        try:
            await install(self.registry, manifest, path, set_aside)
        except LlmosError as exc:
            log.error("pack %s not taken: %s", path.name, describe(exc))
        return True

    async def scan(self) -> None:
        """One look at the folder: every new or changed pack, oldest first."""
        found = await asyncio.to_thread(self._stamps)
        for path in sorted(found, key=lambda p: found[p]):
            if self._seen.get(path) != found[path] and await self._take(path, found[path]):
                self._seen[path] = found[path]

    async def run(self) -> None:
        """Until cancelled; what is in the folder now was the start-up's to take."""
        self._seen = await asyncio.to_thread(self._stamps)
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.scan()
            except Exception:  # the watch must outlive one bad file or a hiccup
                log.exception("watching %s failed; trying again", self.folder)
