"""Model updates: a new version of a serving model loads beside it and takes over when warm.

``ModelUpdates.switch`` (the registry calls it with the model's lock held) loads the new
pack's version under a memory-pool owner of its own (``name@version``) on the device the
serving version runs on, warms it up (the backend does, as for any load), and only then
swaps it in: from that instant new requests get the new version, and requests already
holding the old one (``Leases``) finish on it. A background task waits for the old version
to be idle, at most ``server.update_drain_s``, then unloads it and frees its memory; the
new version's memory then takes the model's name. A pack of the serving version, or one
that fails to load or warm up, leaves the old version serving and says why in the model's
``update`` status (``llmos.state.UpdateStatus``; the table is ``llmos.state.UPDATES``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from llmos.config import Config, ModelConfig
from llmos.errors import BadRequestError, ConflictError, LlmosError
from llmos.pack.manifest import Manifest
from llmos.serving.loading import Loaded, ModelLoader
from llmos.serving.metrics import ServingMetrics
from llmos.state import Cause, ModelStatus, UpdateCause, UpdateStatus
from llmos.vault.opener import describe, read_manifest
from llmos.versions import Leases, ModelEntry, Version, pack_fields

log = logging.getLogger(__name__)

Commit = Callable[[ModelEntry, ModelStatus], None]  # record a model's new status
Current = Callable[[ModelEntry], bool]  # whether the entry is still the registry's


class ModelUpdates:
    """Switches serving models to new versions; retires the old ones in the background."""

    def __init__(self, config: Config, commit: Commit, current: Current,
                 loader: ModelLoader, leases: Leases, metrics: ServingMetrics) -> None:
        self._drain_s = float(config["server.update_drain_s"])
        self._commit = commit
        self._current = current
        self._loader = loader
        self._leases = leases
        self._metrics = metrics
        self._retirements: set[asyncio.Task[None]] = set()

    def _record(self, entry: ModelEntry, update: UpdateStatus) -> None:
        if self._current(entry):
            self._commit(entry, replace(entry.status, update=update))

    def check(self, entry: ModelEntry, manifest: Manifest) -> None:
        """ConflictError (recorded when it is a refusal) if ``manifest`` cannot be an
        update of ``entry`` now (nothing while it does not serve); an upload asks before
        it keeps the pack."""
        if entry.served is not None:
            self._begin(entry, manifest)

    async def update(self, entry: ModelEntry, config: ModelConfig,
                     load: Callable[[], Awaitable[ModelStatus]]) -> ModelStatus:
        """Switch ``entry`` to ``config``'s pack if it serves, else ``load`` it."""
        manifest = await asyncio.to_thread(read_manifest, config.pack)
        if manifest.name != entry.name:
            raise BadRequestError(f"the pack is model {manifest.name!r}, not {entry.name!r}",
                                  "upload it as its own model")
        async with entry.lock:
            if entry.served is not None:
                return await self.switch(entry, config, manifest)
        return await load()

    def _begin(self, entry: ModelEntry, manifest: Manifest) -> UpdateStatus:
        """The update's first state, or ConflictError (recorded when it is a refusal)."""
        st, now, name = entry.status, time.time(), entry.name
        if not UpdateStatus.settled(st.update):
            assert st.update is not None
            raise ConflictError(f"model {name!r} is already being updated to version "
                                f"{st.update.version!r} ({st.update.state.value})",
                                "wait until its update is DONE or FAILED (see /health)")
        if manifest.version == st.version:
            err = ConflictError(f"model {name!r} already serves version {st.version!r}",
                                "give the new pack another version (llmos pack --version)")
            self._record(entry, UpdateStatus.begin(
                st.update, UpdateCause.REFUSED, version=manifest.version, previous=st.version,
                now=now, reason=describe(err)))
            raise err
        return UpdateStatus.begin(st.update, UpdateCause.BEGIN, version=manifest.version,
                                  previous=st.version, now=now)

    async def switch(self, entry: ModelEntry, config: ModelConfig,
                     manifest: Manifest) -> ModelStatus:
        """Load ``config``'s pack (``manifest``) beside ``entry``'s serving version and let
        it take over once warm (``entry.lock`` held, the model serving). Raises the load
        error, after recording it, when the new version does not load: the old serves on."""
        name, update = entry.name, self._begin(entry, manifest)
        self._record(entry, update)
        log.info("model %s: version %s loads beside version %s", name, manifest.version,
                 update.previous)
        owner = f"{name}@{manifest.version}"
        entry.incoming = manifest
        started = time.perf_counter()
        try:
            loaded = await self._loader.load(config, entry.status.device or "cpu", owner)
        except LlmosError as exc:
            self._record(entry, update.to(UpdateCause.FAILED, now=time.time(),
                                          reason=describe(exc)))
            self._metrics.load_failed(name, type(exc).__name__)
            log.error("model %s: update to version %s failed, version %s serves on: %s",
                      name, manifest.version, update.previous, describe(exc))
            raise
        finally:
            entry.incoming = None
        seconds = time.perf_counter() - started
        old = self._take_over(entry, config, loaded, owner)
        self._commit(entry, entry.status.to(
            Cause.UPDATED, now=time.time(), **pack_fields(loaded.manifest),
            load_time_s=seconds, memory_bytes=self._loader.held_bytes(owner, loaded.manifest),
            update=update.to(UpdateCause.WARM, now=time.time(), load_time_s=seconds)))
        log.info("model %s: version %s took over (warm in %.2f s); version %s finishes its "
                 "requests", name, loaded.manifest.version, seconds, update.previous)
        task = asyncio.create_task(self._retire(entry, old), name=f"retire-{name}")
        self._retirements.add(task)
        task.add_done_callback(self._retirements.discard)
        return entry.status

    def _take_over(self, entry: ModelEntry, config: ModelConfig, loaded: Loaded,
                   owner: str) -> Version:
        """The new version serves from now on; the old one, returned, stays addressable.
        Its memory moves to an owner of its own (``name@version``), so that whatever the
        model loads while it drains (an unload and load, a move) never shares an owner
        with it, and freeing it frees nothing else."""
        assert entry.served is not None and entry.manifest is not None
        retiring = f"{entry.name}@{entry.status.version}"
        self._loader.rename(entry.memory_owner, retiring)
        old = Version(entry.status, entry.manifest, entry.served, entry.payload, retiring)
        entry.retiring = old
        entry.config, entry.owner = config, owner
        entry.manifest, entry.payload, entry.served = \
            loaded.manifest, loaded.payload, loaded.served
        return old

    async def _retire(self, entry: ModelEntry, old: Version) -> None:
        """Unload the replaced version once nothing holds it (at most ``update_drain_s``;
        at once when the server stops); its memory goes, the new one's takes the name."""
        began, cut, version = time.perf_counter(), True, old.status.version
        try:
            cut = not await self._leases.drained(old.served, self._drain_s)
        finally:
            entry.retiring = None
            served, owner = old.served, old.owner
            del old  # only ``served`` holds the runtime and its views of the weights now
            await asyncio.get_running_loop().run_in_executor(None, served.close)
            del served  # so that freeing unmaps (and wipes) the buffers now
            self._loader.free(owner)
        async with entry.lock:
            if entry.served is not None and entry.owner and entry.owner != entry.name:
                self._loader.rename(entry.owner, entry.name)
                entry.owner = ""
            seconds = time.perf_counter() - began
            reason = (f"version {version} was still busy after {self._drain_s:g} s "
                      f"(server.update_drain_s): its unfinished requests failed") if cut else ""
            if entry.status.update is not None:
                self._record(entry, entry.status.update.to(
                    UpdateCause.RETIRED, now=time.time(), reason=reason))
        (log.warning if cut else log.info)(
            "model %s: version %s unloaded after %.2f s%s", entry.name, version,
            seconds, f" ({reason})" if cut else "")

    async def stop(self) -> None:
        """The server stops: replaced versions are unloaded now, busy or not (also those
        of an update that ends after this)."""
        self._drain_s = 0.0
        for task in list(self._retirements):
            task.cancel()
        await asyncio.gather(*self._retirements, return_exceptions=True)
