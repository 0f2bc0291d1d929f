"""The supervisor: memory, fleet key, devices and models, then ready; load/unload at run time.

It owns no sockets: the web layer (``llmos.web.app``) ties its ``start``/``stop`` to the
aiohttp application's lifecycle (one cleanup_ctx pair). Start-up, in order; ``stop`` undoes
it in reverse (models unloaded and their weights freed, devices released, memory closed):

1. the weight memory pool (``llmos.hw.memory.MemoryPool``: mlock'ed, hugepages where the
   kernel has them) reserves its hugepages, in a thread.
2. release the fleet key (in a thread: a TPM may take seconds). If that fails the
   supervisor stays up, every model is UNAVAILABLE and /health says why; no crash loop.
3. place and load the models: the device controller scans and claims the accelerators
   and hands the inventory to the reconciler, which places every model by the pure plan
   (``llmos.controllers.placement``) and applies it through this registry, its
   ``ModelTarget``. Loading authenticates, decrypts and decompresses the sealed pack into
   the pool (nothing written anywhere), builds the runtime(s) on the placement's device
   and warms them up, all off the event loop. A model that fails is FAILED with the
   reason, logged and counted; one whose device is absent is UNAVAILABLE with the reason,
   or runs on the CPU when its ``cpu_fallback`` allows (shown as a warning); the others
   carry on. Hot-plug later is the same reconcile again: a model drains when its GPU goes
   and loads when one comes back.
4. tell systemd READY=1 with a STATUS= summary.

READY=1 means "start-up is over": every configured model is READY or has *definitively*
failed (a tampered pack or a missing key does not heal by waiting). Withholding it would
make systemd kill the service at TimeoutStartSec= and restart it forever, so the healthy
models would never serve; readiness for traffic is what /health and /v2/health/ready say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from llmos.config import Config, ModelConfig
from llmos.controllers.devices import DeviceController, EventSource
from llmos.controllers.placement import Placement, PlacementState
from llmos.controllers.reconcile import Reconciler
from llmos.errors import (
    BadRequestError,
    KeyReleaseError,
    LlmosError,
    ModelLoadError,
    NotFoundError,
    NotReadyError,
)
from llmos.hw.claim import Claimer
from llmos.hw.gpu import GpuMemoryReader, NvidiaSmi
from llmos.hw.memory import MemoryPool
from llmos.hw.model import Inventory
from llmos.hw.resources import MetricSample, metric_samples, sample
from llmos.hw.usage import process_usage
from llmos.pack.container import split_files
from llmos.pack.manifest import Manifest
from llmos.serving.backend import (
    DEFAULT_BACKENDS,
    PLATFORMS,
    Backend,
    ModelContext,
    Served,
    TensorModel,
    keep_all,
    runtime_options,
)
from llmos.serving.metrics import ServingMetrics
from llmos.state import Health, KeyStatus, ModelState, ModelStatus, assess
from llmos.systemd import Notifier
from llmos.vault.kek import Kek
from llmos.vault.keys import KeyProvider, provider_from_config
from llmos.vault.prefetch import Prefetch
from llmos.vault.sealed import SealedPack, open_into

log = logging.getLogger(__name__)

#: Start-up time systemd grants each step (key release, one model's load) beyond
#: TimeoutStartSec=, so a large pack on a slow machine is not killed half-way.
STEP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class DeviceSources:
    """Where the device controller looks: ``llmos serve`` passes the machine's (udev
    inventory, netlink monitor, claimer), tests a scripted inventory."""

    scan: Callable[[], Inventory]
    monitor: EventSource | None = None
    claimer: Claimer | None = None
    settle_s: float = 0.25


@dataclass
class _Entry:
    """One model's mutable slot (only the supervisor touches it)."""

    config: ModelConfig
    status: ModelStatus
    manifest: Manifest | None = None
    served: Served | None = None
    payload: memoryview | None = None  # the plaintext, kept alive while the model serves
    parked: bool = False  # unloaded by an operator: placements are recorded, not loaded
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class _Built:
    manifest: Manifest
    payload: memoryview
    served: Served


def _drop_frames(exc: BaseException | None) -> None:
    """Forget the tracebacks of a failed load: their frames still reference the plaintext
    buffers, which could then not be unmapped and wiped memory would linger."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


def _describe(exc: LlmosError) -> str:
    return f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message


def _where(placement: Placement) -> dict[str, str]:
    """The status fields a placement sets."""
    return {"device": placement.device or "", "placement": placement.state.value}


class _Target:
    """The supervisor as the reconciler's ``ModelTarget``."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    async def load(self, placement: Placement) -> None:
        await self._supervisor.place(placement)

    async def drain(self, model: str, reason: str) -> None:
        await self._supervisor.drain(model, reason)

    async def mark_unavailable(self, placement: Placement) -> None:
        await self._supervisor.mark_unavailable(placement)


class Supervisor:
    """Keeps the fleet key, the models and where they run; every method runs on the
    event loop."""

    def __init__(
        self,
        config: Config,
        *,
        notifier: Notifier | None = None,
        provider: Callable[[Config], KeyProvider] = provider_from_config,
        memory: MemoryPool | None = None,
        backends: Mapping[str, Backend] | None = None,
        devices: DeviceSources | None = None,
        prefetch: Prefetch | None = None,
    ) -> None:
        """``memory``: where decrypted weights go (None: plain process memory); its
        lifecycle (reserve, close) becomes the supervisor's. ``devices``: follow these
        accelerators (None: none, every model is planned against an empty inventory).
        ``prefetch``: the key and payloads opened while the server started (start-up takes
        them instead of doing that work again; see ``llmos.vault.prefetch``)."""
        self.config = config
        self.metrics = ServingMetrics()
        self.notifier = notifier or Notifier()
        self._provider_factory = provider
        self._provider: KeyProvider | None = None
        self._memory = memory
        self._prefetch = prefetch
        self._gpu_memory: GpuMemoryReader | None = None
        self._backends: dict[str, Backend] = dict(DEFAULT_BACKENDS if backends is None
                                                  else backends)
        self._kek: Kek | None = None
        self._key = KeyStatus(provider=str(config["keys.provider"]))
        self._key_lock = asyncio.Lock()
        self._starting = True
        self._stopping = False
        self._entries: dict[str, _Entry] = {}
        now = time.time()
        for m in config.models:
            self._entries[m.name] = _Entry(m, ModelStatus(m.name, ModelState.LOADING, since=now))
        for e in self._entries.values():
            self.metrics.model_status(e.status)
        self._reconciler = Reconciler(config.models, _Target(self))
        self._devices = None if devices is None else DeviceController(
            devices.scan, self._reconciler, monitor=devices.monitor, claimer=devices.claimer,
            settle_s=devices.settle_s)
        self.metrics.watch_resources(self._resource_gauges, self._fallback_counts)

    # --- extension points ----------------------------------------------------------
    def register_backend(self, kind: str, backend: Backend) -> None:
        """Serve packs of manifest ``kind`` with ``backend`` (call before start)."""
        self._backends[kind] = backend

    # --- queries -------------------------------------------------------------------
    @property
    def memory(self) -> MemoryPool | None:
        """The pool holding decrypted weights (None: plain process memory)."""
        return self._memory

    @property
    def devices(self) -> DeviceController | None:
        """The accelerators followed (None when this supervisor follows none)."""
        return self._devices

    @property
    def reconciler(self) -> Reconciler:
        """Where each model runs (``.plan``). Models are added with ``load(name, config)``
        and removed with ``remove``, which place them again."""
        return self._reconciler

    @property
    def inventory(self) -> Inventory:
        return self._devices.inventory if self._devices is not None else Inventory()

    @property
    def key(self) -> KeyStatus:
        return self._key

    def statuses(self) -> tuple[ModelStatus, ...]:
        return tuple(e.status for e in self._entries.values())

    def health(self) -> Health:
        return assess(self._key, self.statuses(), self._starting, self._warnings())

    def _warnings(self) -> tuple[str, ...]:
        """Weights that did not get the memory asked for: served anyway, but said."""
        fallbacks = self._memory.fallbacks() if self._memory is not None else ()
        return tuple(f"memory fallback ({f.what}): {f.reason}; to fix: {f.fix}"
                     for f in fallbacks)

    def accelerators_used(self) -> dict[str, int]:
        """Memory in use per NVIDIA GPU (PCI address -> bytes), read live (nvidia-smi at
        most every few seconds, never waited for); {} without NVIDIA GPUs."""
        if not any(a.vendor == "nvidia" for a in self.inventory.accelerators):
            return {}
        if self._gpu_memory is None:
            self._gpu_memory = GpuMemoryReader(NvidiaSmi())
        return self._gpu_memory.used()

    def _resource_gauges(self) -> tuple[MetricSample, ...]:
        return metric_samples(sample(self._memory, self.inventory,
                                     accelerators_used=self.accelerators_used()))

    def _fallback_counts(self) -> tuple[tuple[str, int], ...]:
        fallbacks = self._memory.fallbacks() if self._memory is not None else ()
        return tuple((f.what, f.count) for f in fallbacks)

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self._entries) or "none"
            raise NotFoundError(f"unknown model {name!r}", f"models here: {known}")
        return entry

    def status(self, name: str) -> ModelStatus:
        return self._entry(name).status

    def model_config(self, name: str) -> ModelConfig:
        return self._entry(name).config

    def _check_version(self, entry: _Entry, version: str | None) -> None:
        if version is not None and version != entry.status.version:
            have = entry.status.version or "unknown until the pack is read"
            raise NotFoundError(f"model {entry.config.name!r} has no version {version!r}",
                                f"its version is {have}")

    def manifest(self, name: str, version: str | None = None) -> Manifest:
        """The pack's manifest (known once the pack's clear header was read)."""
        entry = self._entry(name)
        self._check_version(entry, version)
        if entry.manifest is None:
            raise NotReadyError(f"model {name!r}: its pack could not be read: "
                                f"{entry.status.reason or entry.status.state.value}",
                                "see /health for the reason")
        return entry.manifest

    def served(self, name: str, version: str | None = None) -> Served:
        """The loaded model, or NotReadyError saying why it is not serving."""
        entry = self._entry(name)
        if version is not None:
            self._check_version(entry, version)
        if entry.served is None:
            st = entry.status
            detail = f": {st.reason}" if st.reason else ""
            raise NotReadyError(f"model {name!r} is {st.state.value}{detail}",
                                f"retry once /v2/models/{name}/ready answers 200"
                                if st.state is ModelState.LOADING else "see /health")
        return entry.served

    def tensor_model(self, name: str, version: str | None = None) -> TensorModel:
        served = self.served(name, version)
        if not isinstance(served, TensorModel):
            kind = self._entries[name].status.kind
            raise BadRequestError(f"model {name!r} is a {kind} model, not a tensor model",
                                  "use the OpenAI-compatible API under /v1 for it")
        return served

    # --- state changes -------------------------------------------------------------
    def _set(self, entry: _Entry, status: ModelStatus) -> None:
        entry.status = status
        self.metrics.model_status(status)

    def _fail(self, entry: _Entry, exc: LlmosError, state: ModelState = ModelState.FAILED) -> None:
        self._set(entry, entry.status.to(state, now=time.time(), reason=_describe(exc),
                                         error_type=type(exc).__name__))
        if state is ModelState.FAILED:
            self.metrics.load_failed(entry.config.name, type(exc).__name__)
        log.error("model %s %s: %s", entry.config.name, state.value, _describe(exc))

    def _status_line(self) -> None:
        self.notifier.status(self.health().summary())

    # --- the fleet key -------------------------------------------------------------
    async def _ensure_key(self) -> Kek:
        async with self._key_lock:
            if self._kek is not None:
                return self._kek
            loop = asyncio.get_running_loop()
            early = (None if self._prefetch is None or self._provider is not None
                     else await loop.run_in_executor(None, self._prefetch.key))
            if early is not None:
                return self._released(*early, when=" (while the server started)")
            try:
                if self._provider is None:
                    self._provider = self._provider_factory(self.config)
                provider = self._provider
                kek = await loop.run_in_executor(None, provider.release)
            except Exception as exc:
                err = exc if isinstance(exc, LlmosError) else KeyReleaseError(
                    f"{type(exc).__name__}: {exc}", "see the server log")
                self._key = KeyStatus(self._key.provider, released=False, reason=_describe(err),
                                      details=self._provider.describe() if self._provider else {})
                log.error("fleet key unavailable (%s): %s", self._key.provider, _describe(err))
                raise KeyReleaseError(f"fleet key unavailable: {err.message}", err.hint) from exc
            return self._released(provider, kek)

    def _released(self, provider: KeyProvider, kek: Kek, when: str = "") -> Kek:
        """Keep the key ``provider`` released and say so (status, log)."""
        self._provider, self._kek = provider, kek
        self._key = KeyStatus(provider.name, released=True,
                              details={"kek_id": kek.id, **provider.describe()})
        log.info("fleet key %s released by the %s provider%s", kek.id, provider.name, when)
        return kek

    # --- loading -------------------------------------------------------------------
    async def _read_manifest(self, entry: _Entry) -> None:
        """Fill version, kind and sizes from the pack's clear header (no key needed)."""
        path = entry.config.pack
        loop = asyncio.get_running_loop()
        manifest = await loop.run_in_executor(None, lambda: SealedPack.open(path).manifest)
        entry.manifest = manifest
        self._set(entry, replace(
            entry.status, version=manifest.version, kind=manifest.kind,
            platform=PLATFORMS.get(manifest.runtime, manifest.runtime),
            size_packed=manifest.size_packed, size_plain=manifest.size_plain))

    def _build(self, cfg: ModelConfig, kek: Kek, device: str) -> _Built:
        """Decrypt, decompress and load one pack on ``device`` (blocking; a worker thread)."""
        sealed = SealedPack.open(cfg.pack)
        manifest = sealed.manifest
        backend = self._backends.get(manifest.kind)
        if backend is None:
            raise ModelLoadError(f"no serving backend for {manifest.kind!r} packs in this build",
                                 f"serve it with a build that supports {manifest.kind} models")
        started = time.perf_counter()
        payload = None if self._prefetch is None else self._prefetch.take(cfg.name)
        if payload is None:
            payload = open_into(sealed, kek, self._memory, cfg.name)
            log.info("model %s: decrypted, decompressed and verified in %.2f s", cfg.name,
                     time.perf_counter() - started)
        else:
            log.info("model %s: payload taken from the early decryption (waited %.2f s)",
                     cfg.name, time.perf_counter() - started)
        timeout_s = cfg.timeout_s or float(self.config["server.request_timeout_s"])
        release = keep_all if self._memory is None else self._memory.releaser(cfg.name)
        ctx = ModelContext(cfg, manifest, split_files(manifest, payload), self.metrics,
                           runtime_options(cfg, device), timeout_s, release)
        try:
            served = backend(ctx)
        except LlmosError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{manifest.runtime} runtime refused model {cfg.name!r} on "
                                 f"{device}: {type(exc).__name__}: {exc}",
                                 "check that the pack was made for this runtime version") from exc
        return _Built(manifest, payload, served)

    def _held_bytes(self, name: str, manifest: Manifest) -> int:
        """Weight memory a loaded model holds: its pool buffers, else its plaintext."""
        if self._memory is None:
            return manifest.size_plain
        return sum(u.bytes for u in self._memory.usage() if u.owner == name)

    async def _load_locked(self, entry: _Entry, placement: Placement) -> ModelStatus:
        """Load ``entry`` on its placement's device (``entry.lock`` held).

        Raises the load error after recording it in the model's status.
        """
        name = entry.config.name
        device = placement.device or "cpu"
        self._set(entry, entry.status.to(ModelState.LOADING, now=time.time(), memory_bytes=0,
                                         **_where(placement)))
        if self._starting:
            self.notifier.working(f"loading model {name}", STEP_TIMEOUT_S)
        loop = asyncio.get_running_loop()
        try:
            await self._read_manifest(entry)
            kek = await self._ensure_key()
        except KeyReleaseError as exc:
            self._fail(entry, exc, ModelState.UNAVAILABLE)
            raise
        except LlmosError as exc:
            self._fail(entry, exc)
            raise
        started = time.perf_counter()
        try:
            built = await loop.run_in_executor(None, self._build, entry.config, kek, device)
        except LlmosError as exc:
            _drop_frames(exc)
            self._free(name)
            self._fail(entry, exc)
            raise
        except Exception as exc:
            log.exception("model %s: unexpected load failure", name)
            _drop_frames(exc)
            self._free(name)
            wrapped = ModelLoadError(f"loading model {name!r} failed: "
                                     f"{type(exc).__name__}: {exc}", "see the server log")
            self._fail(entry, wrapped)
            raise wrapped from exc
        entry.manifest, entry.payload, entry.served = built.manifest, built.payload, \
            built.served
        seconds = time.perf_counter() - started
        fallback = placement.state is PlacementState.FALLBACK
        self._set(entry, entry.status.to(
            ModelState.READY, now=time.time(), load_time_s=seconds,
            reason=placement.reason if fallback else "",
            memory_bytes=self._held_bytes(name, built.manifest)))
        log.info("model %s %s READY on %s%s in %.2f s (%d packed -> %d bytes in memory)",
                 name, built.manifest.version, device, " (fallback)" if fallback else "",
                 seconds, built.manifest.size_packed, built.manifest.size_plain)
        return entry.status

    async def load(self, name: str, config: ModelConfig | None = None) -> ModelStatus:
        """Load (or add, with ``config``) a model where the placement plan puts it.

        An operator's action: it undoes ``unload``. Raises the load error after recording
        it, or NotReadyError when the model has no device to run on now.
        """
        if config is not None:
            entry = self._entries.get(name)
            if entry is None:
                self._entries[name] = _Entry(config, ModelStatus(name, ModelState.UNLOADED,
                                                                 since=time.time()), parked=True)
                await self._replan()
            elif entry.served is None and entry.config != config:
                entry.config, entry.parked = config, True  # placed again, loaded below
                await self._replan()
        entry = self._entry(name)
        async with entry.lock:
            entry.parked = False
            if entry.served is not None:
                return entry.status
            placement = self._reconciler.plan.get(name)
            if placement is None:
                raise NotReadyError(f"model {name!r} is not placed yet",
                                    "retry once start-up is over (see /health)")
            if not placement.runnable:
                self._set(entry, entry.status.to(ModelState.UNAVAILABLE, now=time.time(),
                                                 reason=placement.reason, **_where(placement)))
                raise NotReadyError(f"model {name!r} cannot run now: {placement.reason}",
                                    "see /health")
            await self._load_locked(entry, placement)
        if not self._starting:
            self._status_line()
        return entry.status

    def _free(self, name: str) -> None:
        if self._memory is not None:
            self._memory.free(name)

    async def _release(self, entry: _Entry, status: ModelStatus) -> None:
        """Stop serving (``status`` at once: not ready), let in-flight work finish while the
        runtime closes, drop every view of the plaintext, then free its memory."""
        served, entry.served = entry.served, None
        self._set(entry, status)
        if served is not None:
            await asyncio.get_running_loop().run_in_executor(None, served.close)
        entry.payload = None
        del served
        self._free(entry.config.name)

    async def unload(self, name: str) -> ModelStatus:
        """Stop serving a model and free its memory; it stays configured (UNLOADED) and
        stays unloaded whatever devices come and go, until ``load``."""
        entry = self._entry(name)
        async with entry.lock:
            entry.parked = True
            await self._release(entry, entry.status.to(ModelState.UNLOADED, now=time.time(),
                                                       memory_bytes=0))
            log.info("model %s unloaded", name)
        if not self._starting:
            self._status_line()
        return entry.status

    async def remove(self, name: str) -> None:
        """Unload a model and forget it (an admin deleting it)."""
        await self.unload(name)
        del self._entries[name]
        self.metrics.forget(name)
        await self._replan()

    # --- the reconciler's target (controllers.reconcile.ModelTarget) ------------------
    async def _replan(self) -> None:
        """The configured models changed: place them again (against the last inventory)."""
        await self._reconciler.set_models(e.config for e in self._entries.values())

    async def place(self, placement: Placement) -> None:
        """Serve a model on ``placement.device``; a failure is recorded in its status."""
        entry = self._entries.get(placement.model)
        if entry is None or self._stopping:
            return
        async with entry.lock:
            if entry.served is not None and entry.status.device == placement.device:
                return  # already there
            if entry.served is not None:  # moving (the plan drains first; be sure)
                await self._release(entry, entry.status.to(
                    ModelState.LOADING, now=time.time(), memory_bytes=0, **_where(placement)))
            if entry.parked:  # unloaded by an operator: it stays so until loaded
                self._set(entry, entry.status.to(ModelState.UNLOADED, now=time.time(),
                                                 **_where(placement)))
            elif (self._starting and entry.manifest is None
                  and entry.status.state is ModelState.FAILED) or \
                    (self._key.released is False
                     and entry.status.error_type == "KeyReleaseError"):
                # Its pack is unreadable, or start-up already made it unavailable for want
                # of the key: only where it would run is new; state and 'since' stand.
                self._set(entry, replace(entry.status, device=placement.device or "",
                                         placement=placement.state.value))
            elif self._key.released is False:
                self._set(entry, entry.status.to(ModelState.UNAVAILABLE, now=time.time(),
                                                 reason=self._key.reason,
                                                 error_type="KeyReleaseError",
                                                 **_where(placement)))
            else:
                with contextlib.suppress(LlmosError):  # recorded in its status
                    await self._load_locked(entry, placement)
        if not self._starting:
            self._status_line()

    async def drain(self, model: str, reason: str) -> None:
        """Not ready at once; in-flight work finishes, then the runtime and weights go."""
        entry = self._entries.get(model)
        if entry is None:
            return
        async with entry.lock:
            if entry.served is None:
                return
            await self._release(entry, entry.status.to(ModelState.UNAVAILABLE, now=time.time(),
                                                       reason=reason, memory_bytes=0))
        log.warning("model %s drained: %s", model, reason)
        if not self._starting:
            self._status_line()

    async def mark_unavailable(self, placement: Placement) -> None:
        """No device for the model now: not loaded, not ready, the reason on its status."""
        entry = self._entries.get(placement.model)
        if entry is None:
            return
        async with entry.lock:
            await self._release(entry, entry.status.to(
                ModelState.UNAVAILABLE, now=time.time(), reason=placement.reason,
                memory_bytes=0, **_where(placement)))
        if not self._starting:
            self._status_line()

    # --- lifecycle -----------------------------------------------------------------
    async def _place_models(self) -> None:
        """The first reconcile: every model placed and loaded (or failed) on return."""
        if self._devices is None:
            await self._reconciler(Inventory())
            return
        try:
            await self._devices.start()
        except Exception as exc:  # claiming or scanning failed: serve what was seen
            log.error("the device controller did not start (%s: %s): models are placed on "
                      "the accelerators found so far and hot-plug is not followed",
                      type(exc).__name__, exc)
            await self._reconciler(self._devices.inventory)

    async def start(self) -> Health:
        """The start-up pass: memory, key, devices and every configured model, READY=1."""
        if self._memory is not None:
            self.notifier.working("reserving weight memory", STEP_TIMEOUT_S)
            await asyncio.to_thread(self._memory.reserve)
        for entry in self._entries.values():
            try:
                await self._read_manifest(entry)
            except LlmosError as exc:
                self._fail(entry, exc)
        self.notifier.working("releasing the fleet key", STEP_TIMEOUT_S)
        try:
            await self._ensure_key()
        except KeyReleaseError as exc:
            now = time.time()
            for entry in self._entries.values():
                if entry.status.state is not ModelState.FAILED:
                    self._set(entry, entry.status.to(ModelState.UNAVAILABLE, now=now,
                                                     reason=_describe(exc),
                                                     error_type="KeyReleaseError"))
        self.notifier.working("placing models on devices", STEP_TIMEOUT_S)
        await self._place_models()
        if self._prefetch is not None:
            self._prefetch.discard()  # what no model took (it did not load)
            self._prefetch = None
        self._starting = False
        health = self.health()
        (log.info if health.ready else log.warning)("start-up finished: %s; %s",
                                                     health.summary(),
                                                     process_usage().describe())
        self.notifier.ready(health.summary())
        return health

    async def stop(self) -> None:
        """Undo ``start``: unload every model (weights freed), release the devices, close
        the memory pool. Hot-plug no longer loads anything from here on."""
        self.notifier.stopping("unloading models")
        self._stopping = True
        for name in list(self._entries):
            try:
                await self.unload(name)
            except Exception:
                log.exception("model %s: unload failed", name)
        if self._devices is not None:
            await self._devices.stop()
        if self._memory is not None:
            self._memory.close()
