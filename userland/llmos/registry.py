"""The model registry: every configured model, its state and its loaded runtime.

It is the reconciler's target (``llmos.controllers.reconcile.ModelTarget``: ``load``,
``drain``, ``mark_unavailable``) and the operator's (``load``/``unload``/``remove``). Each
state change goes through ``llmos.state``'s transition table (``ModelStatus.to`` with its
``Cause``), so an illegal one raises instead of showing a state nobody planned.

Loading a model: read the pack's clear header (version, kind, sizes), get the fleet key
from the ``PackOpener``, then let the ``ModelLoader`` (``llmos.serving.loading``) open the
pack and build its runtime(s) in a worker thread. A failure is recorded in the model's
status (FAILED, or UNAVAILABLE without a key) and the others carry on. The plaintext is
kept while the model serves and freed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from llmos.config import Config, ModelConfig
from llmos.controllers.placement import Placement, PlacementState
from llmos.controllers.reconcile import Reconciler
from llmos.errors import (
    KeyReleaseError,
    LlmosError,
    NotFoundError,
    NotReadyError,
)
from llmos.hw.memory import MemoryPool
from llmos.pack.manifest import Manifest
from llmos.serving.backend import Backend, Served
from llmos.serving.loading import ModelLoader
from llmos.serving.metrics import ServingMetrics
from llmos.serving.prepack_memo import PrepackMemo
from llmos.state import Cause, KeyStatus, ModelState, ModelStatus
from llmos.systemd import Progress
from llmos.updates import ModelUpdates
from llmos.vault.opener import PackOpener, describe, read_manifest
from llmos.versions import Leases, ModelEntry, pack_fields

log = logging.getLogger(__name__)


def _where(placement: Placement) -> dict[str, str]:
    """The status fields a placement sets."""
    return {"device": placement.device or "", "placement": placement.state.value}


class ModelRegistry:
    """Every model's slot, loaded and unloaded by the reconciler and the operator; every
    method runs on the event loop."""

    def __init__(self, config: Config, opener: PackOpener, backends: Mapping[str, Backend],
                 metrics: ServingMetrics, memory: MemoryPool | None = None,
                 progress: Progress | None = None) -> None:
        """``progress``: where start-up steps and later status changes are told (systemd)."""
        self.config = config
        self.metrics = metrics
        self.progress = progress or Progress(lambda what, s: None, lambda: None)
        self._opener = opener
        self._loader = ModelLoader(config, opener, backends, metrics, memory,
                                   PrepackMemo.in_state_dir(Path(config["server.state_dir"])))
        self._stopping = False
        self._entries: dict[str, ModelEntry] = {}
        self.leases = Leases()
        self._updates = ModelUpdates(config, self._set,
                                     lambda e: self._entries.get(e.name) is e,
                                     self._loader, self.leases, metrics)
        now = time.time()
        for m in config.models:
            self._entries[m.name] = ModelEntry(m, ModelStatus(m.name, ModelState.LOADING,
                                                              since=now))
        for e in self._entries.values():
            self.metrics.model_status(e.status)
        self.reconciler = Reconciler(config.models, self)

    # --- queries -------------------------------------------------------------------
    @property
    def key(self) -> KeyStatus:
        return self._opener.status

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def statuses(self) -> tuple[ModelStatus, ...]:
        return tuple(e.status for e in self._entries.values())

    def _entry(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self._entries) or "none"
            raise NotFoundError(f"unknown model {name!r}", f"models here: {known}")
        return entry

    def status(self, name: str, version: str | None = None) -> ModelStatus:
        """The model's status, or that of one of its versions (NotFoundError if it has
        no such version now)."""
        return self._entry(name).version_status(version)

    def versions(self, name: str) -> tuple[str, ...]:
        """Its versions now: the serving one first, then one loading or retiring."""
        return self._entry(name).versions()

    def model_config(self, name: str) -> ModelConfig:
        return self._entry(name).config

    def manifest(self, name: str, version: str | None = None) -> Manifest:
        """The pack's manifest (known once the pack's clear header was read)."""
        return self._entry(name).known_manifest(version)

    def served(self, name: str, version: str | None = None) -> Served:
        """The loaded model, or NotReadyError saying why it is not serving."""
        return self._entry(name).serving(version)

    # --- state changes (each through the table in llmos.state) ------------------------
    def _set(self, entry: ModelEntry, status: ModelStatus) -> None:
        entry.status = status
        self.metrics.model_status(status)

    def _fail(self, entry: ModelEntry, exc: LlmosError, cause: Cause = Cause.LOAD_FAILED) -> None:
        self._set(entry, entry.status.to(cause, now=time.time(), reason=describe(exc),
                                         error_type=type(exc).__name__))
        if cause is Cause.LOAD_FAILED:
            self.metrics.load_failed(entry.config.name, type(exc).__name__)
        log.error("model %s %s: %s", entry.config.name, entry.status.state.value,
                  describe(exc))

    def key_unavailable(self, exc: KeyReleaseError) -> None:
        """Start-up found no fleet key: every model not already FAILED is UNAVAILABLE."""
        now = time.time()
        for entry in self._entries.values():
            if entry.status.state is not ModelState.FAILED:
                self._set(entry, entry.status.to(Cause.KEY_UNAVAILABLE, now=now,
                                                 reason=describe(exc),
                                                 error_type="KeyReleaseError"))

    # --- loading -------------------------------------------------------------------
    async def read_manifests(self) -> None:
        """Every model's version, kind and sizes from its pack's clear header; a pack that
        cannot be read fails its model."""
        for entry in self._entries.values():
            try:
                await self._read_manifest(entry)
            except LlmosError as exc:
                self._fail(entry, exc)

    async def _read_manifest(self, entry: ModelEntry) -> None:
        """Fill version, kind and sizes from the pack's clear header (no key needed)."""
        manifest = await asyncio.to_thread(read_manifest, entry.config.pack)
        entry.manifest = manifest
        self._set(entry, replace(entry.status, **pack_fields(manifest)))

    async def _open_and_build(self, entry: ModelEntry, device: str) -> None:
        """Load the entry's pack as its serving version; a failure is recorded, raised."""
        try:
            loaded = await self._loader.load(entry.config, device)
        except LlmosError as exc:
            self._fail(entry, exc)
            raise
        entry.manifest, entry.payload, entry.served = \
            loaded.manifest, loaded.payload, loaded.served

    async def _load_locked(self, entry: ModelEntry, placement: Placement) -> ModelStatus:
        """Load ``entry`` on its placement's device (``entry.lock`` held).

        Raises the load error after recording it in the model's status.
        """
        name = entry.config.name
        device = placement.device or "cpu"
        self._set(entry, entry.status.to(Cause.LOAD, now=time.time(), memory_bytes=0,
                                         **_where(placement)))
        self.progress.step(f"loading model {name}")
        try:
            await self._read_manifest(entry)
            await self._opener.key()
        except KeyReleaseError as exc:
            self._fail(entry, exc, Cause.KEY_UNAVAILABLE)
            raise
        except LlmosError as exc:
            self._fail(entry, exc)
            raise
        started = time.perf_counter()
        await self._open_and_build(entry, device)
        assert entry.manifest is not None
        seconds = time.perf_counter() - started
        fallback = placement.state is PlacementState.FALLBACK
        self._set(entry, entry.status.to(
            Cause.LOADED, now=time.time(), load_time_s=seconds,
            reason=placement.reason if fallback else "",
            memory_bytes=self._loader.held_bytes(name, entry.manifest)))
        log.info("model %s %s READY on %s%s in %.2f s (%d packed -> %d bytes in memory)",
                 name, entry.manifest.version, device, " (fallback)" if fallback else "",
                 seconds, entry.manifest.size_packed, entry.manifest.size_plain)
        return entry.status

    async def _add(self, name: str, config: ModelConfig) -> None:
        """A new model (UNLOADED until loaded), or a not-serving one with a new config."""
        entry = self._entries.get(name)
        if entry is None:
            self._entries[name] = ModelEntry(config, ModelStatus(name, ModelState.UNLOADED,
                                                             since=time.time()), parked=True)
            await self._replan()
        elif entry.served is None and entry.config != config:
            entry.config, entry.parked = config, True  # placed again, loaded below
            await self._replan()

    async def load(self, name: str, config: ModelConfig | None = None) -> ModelStatus:
        """Load (or add, with ``config``) a model where the placement plan puts it.

        An operator's action: it undoes ``unload``. Raises the load error after recording
        it, or NotReadyError when the model has no device to run on now.
        """
        if config is not None:
            await self._add(name, config)
        entry = self._entry(name)
        async with entry.lock:
            entry.parked = False
            if entry.served is not None:
                return entry.status
            placement = self.reconciler.plan.get(name)
            if placement is None:
                raise NotReadyError(f"model {name!r} is not placed yet",
                                    "retry once start-up is over (see /health)")
            if not placement.runnable:
                self._set(entry, entry.status.to(Cause.NO_DEVICE, now=time.time(),
                                                 reason=placement.reason, **_where(placement)))
                raise NotReadyError(f"model {name!r} cannot run now: {placement.reason}",
                                    "see /health")
            await self._load_locked(entry, placement)
        self.progress.changed()
        return entry.status

    def check_update(self, name: str, manifest: Manifest) -> None:
        """ConflictError if this pack cannot update the model now (``llmos.updates``)."""
        self._updates.check(self._entry(name), manifest)

    async def update(self, name: str, config: ModelConfig) -> ModelStatus:
        """Serve ``config``'s pack, another version of model ``name``, once warm beside the
        serving one (``llmos.updates``); a model that does not serve just loads it."""
        status = await self._updates.update(self._entry(name), config,
                                            lambda: self.load(name, config))
        self.progress.changed()
        return status

    async def _release(self, entry: ModelEntry, status: ModelStatus) -> None:
        """Stop serving (``status`` at once: not ready), let in-flight work finish while the
        runtime closes, drop every view of the plaintext, then free its memory."""
        served, entry.served = entry.served, None
        self._set(entry, status)
        if served is not None:
            await asyncio.get_running_loop().run_in_executor(None, served.close)
        entry.payload = None
        del served
        self._loader.free(entry.memory_owner)
        entry.owner = ""

    async def unload(self, name: str) -> ModelStatus:
        """Stop serving a model and free its memory; it stays configured (UNLOADED) and
        stays unloaded whatever devices come and go, until ``load``."""
        entry = self._entry(name)
        async with entry.lock:
            entry.parked = True
            await self._release(entry, entry.status.to(Cause.UNLOAD, now=time.time(),
                                                       memory_bytes=0))
            log.info("model %s unloaded", name)
        self.progress.changed()
        return entry.status

    async def remove(self, name: str) -> None:
        """Unload a model and forget it (an admin deleting it)."""
        await self.unload(name)
        del self._entries[name]
        self.metrics.forget(name)
        await self._replan()

    async def unload_all(self) -> None:
        """The server stops: every model unloaded, and no placement loads one again."""
        self._stopping = True
        await self._updates.stop()  # replaced versions go now, not once idle
        for name in list(self._entries):
            try:
                await self.unload(name)
            except Exception:
                log.exception("model %s: unload failed", name)
        await self._updates.stop()  # an update that was loading switched meanwhile

    # --- the reconciler's target (controllers.reconcile.ModelTarget) ------------------
    async def _replan(self) -> None:
        """The configured models changed: place them again (against the last inventory)."""
        await self.reconciler.set_models(e.config for e in self._entries.values())

    async def _place_locked(self, entry: ModelEntry, placement: Placement) -> None:
        if entry.served is not None:  # moving (the plan drains first; be sure)
            await self._release(entry, entry.status.to(
                Cause.MOVE, now=time.time(), memory_bytes=0, **_where(placement)))
        if entry.parked:  # unloaded by an operator: it stays so until loaded
            self._set(entry, entry.status.to(Cause.PARKED, now=time.time(),
                                             **_where(placement)))
        elif entry.settled_for_good(self.progress.starting, self.key.released):
            self._set(entry, replace(entry.status, device=placement.device or "",
                                     placement=placement.state.value))
        elif self.key.released is False:
            self._set(entry, entry.status.to(Cause.KEY_UNAVAILABLE, now=time.time(),
                                             reason=self.key.reason,
                                             error_type="KeyReleaseError",
                                             **_where(placement)))
        else:
            with contextlib.suppress(LlmosError):  # recorded in its status
                await self._load_locked(entry, placement)

    async def place(self, placement: Placement) -> None:
        """Serve a model on ``placement.device``; a failure is recorded in its status."""
        entry = self._entries.get(placement.model)
        if entry is None or self._stopping:
            return
        async with entry.lock:
            if entry.served is not None and entry.status.device == placement.device:
                return  # already there
            await self._place_locked(entry, placement)
        self.progress.changed()

    async def drain(self, model: str, reason: str) -> None:
        """Not ready at once; in-flight work finishes, then the runtime and weights go."""
        entry = self._entries.get(model)
        if entry is None:
            return
        async with entry.lock:
            if entry.served is None:
                return
            await self._release(entry, entry.status.to(Cause.DRAIN, now=time.time(),
                                                       reason=reason, memory_bytes=0))
        log.warning("model %s drained: %s", model, reason)
        self.progress.changed()

    async def mark_unavailable(self, placement: Placement) -> None:
        """No device for the model now: not loaded, not ready, the reason on its status."""
        entry = self._entries.get(placement.model)
        if entry is None:
            return
        async with entry.lock:
            await self._release(entry, entry.status.to(
                Cause.NO_DEVICE, now=time.time(), reason=placement.reason,
                memory_bytes=0, **_where(placement)))
        self.progress.changed()
