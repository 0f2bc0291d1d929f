"""The supervisor: fleet key, then every configured model, then ready; load/unload at run time.

It owns no sockets: the web layer (``llmos.web.app``) ties its ``start``/``stop`` to the
aiohttp application's lifecycle. Start-up, in order:

1. release the fleet key (in a thread: a TPM may take seconds). If that fails the
   supervisor stays up, every model is UNAVAILABLE and /health says why; no crash loop.
2. load each model: authenticate + decrypt + decompress the sealed pack into memory
   (nothing written anywhere), build the runtime(s) and warm them up, all off the event
   loop. A model that fails is FAILED with the reason, logged and counted; the others
   carry on.
3. tell systemd READY=1 with a STATUS= summary.

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
from typing import Protocol

from llmos.config import Config, ModelConfig
from llmos.errors import (
    BadRequestError,
    KeyReleaseError,
    LlmosError,
    ModelLoadError,
    NotFoundError,
    NotReadyError,
)
from llmos.pack.container import split_files
from llmos.pack.manifest import Manifest
from llmos.serving.backend import (
    DEFAULT_BACKENDS,
    PLATFORMS,
    Backend,
    ModelContext,
    Served,
    TensorModel,
    runtime_options,
)
from llmos.serving.metrics import ServingMetrics
from llmos.state import Health, KeyStatus, ModelState, ModelStatus, assess
from llmos.systemd import Notifier
from llmos.vault.kek import Kek
from llmos.vault.keys import KeyProvider, provider_from_config
from llmos.vault.sealed import Allocator, SealedPack, open_payload

log = logging.getLogger(__name__)

#: Start-up time systemd grants each step (key release, one model's load) beyond
#: TimeoutStartSec=, so a large pack on a slow machine is not killed half-way.
STEP_TIMEOUT_S = 300.0


class WeightMemory(Protocol):
    """Where decrypted weights live (``llmos.hw.memory.MemoryPool``: pinned, hugepages)."""

    def allocator(self, owner: str) -> Allocator: ...

    def free(self, owner: str) -> int: ...


@dataclass
class _Entry:
    """One model's mutable slot (only the supervisor touches it)."""

    config: ModelConfig
    status: ModelStatus
    manifest: Manifest | None = None
    served: Served | None = None
    payload: memoryview | None = None  # the plaintext, kept alive while the model serves
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


class Supervisor:
    """Keeps the fleet key and the models; every method runs on the event loop."""

    def __init__(
        self,
        config: Config,
        *,
        notifier: Notifier | None = None,
        provider: Callable[[Config], KeyProvider] = provider_from_config,
        memory: WeightMemory | None = None,
        backends: Mapping[str, Backend] | None = None,
    ) -> None:
        self.config = config
        self.metrics = ServingMetrics()
        self.notifier = notifier or Notifier()
        self._provider_factory = provider
        self._provider: KeyProvider | None = None
        self._memory = memory
        self._backends: dict[str, Backend] = dict(DEFAULT_BACKENDS if backends is None
                                                  else backends)
        self._kek: Kek | None = None
        self._key = KeyStatus(provider=str(config["keys.provider"]))
        self._key_lock = asyncio.Lock()
        self._starting = True
        self._entries: dict[str, _Entry] = {}
        now = time.time()
        for m in config.models:
            self._entries[m.name] = _Entry(m, ModelStatus(m.name, ModelState.LOADING, since=now))
        for e in self._entries.values():
            self.metrics.model_status(e.status)

    # --- extension points ----------------------------------------------------------
    def register_backend(self, kind: str, backend: Backend) -> None:
        """Serve packs of manifest ``kind`` with ``backend`` (call before start)."""
        self._backends[kind] = backend

    # --- queries -------------------------------------------------------------------
    @property
    def memory(self) -> WeightMemory | None:
        """The pool holding decrypted weights (None: plain process memory)."""
        return self._memory

    @property
    def key(self) -> KeyStatus:
        return self._key

    def statuses(self) -> tuple[ModelStatus, ...]:
        return tuple(e.status for e in self._entries.values())

    def health(self) -> Health:
        return assess(self._key, self.statuses(), self._starting)

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
            try:
                if self._provider is None:
                    self._provider = self._provider_factory(self.config)
                provider = self._provider
                kek = await asyncio.get_running_loop().run_in_executor(None, provider.release)
            except Exception as exc:
                err = exc if isinstance(exc, LlmosError) else KeyReleaseError(
                    f"{type(exc).__name__}: {exc}", "see the server log")
                self._key = KeyStatus(self._key.provider, released=False, reason=_describe(err))
                log.error("fleet key unavailable (%s): %s", self._key.provider, _describe(err))
                raise KeyReleaseError(f"fleet key unavailable: {err.message}", err.hint) from exc
            self._kek = kek
            self._key = KeyStatus(provider.name, released=True,
                                  details={"kek_id": kek.id, **provider.describe()})
            log.info("fleet key %s released by the %s provider", kek.id, provider.name)
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

    def _build(self, cfg: ModelConfig, kek: Kek) -> _Built:
        """Decrypt, decompress and load one pack (blocking; runs in a worker thread)."""
        sealed = SealedPack.open(cfg.pack)
        manifest = sealed.manifest
        backend = self._backends.get(manifest.kind)
        if backend is None:
            raise ModelLoadError(f"no serving backend for {manifest.kind!r} packs in this build",
                                 f"serve it with a build that supports {manifest.kind} models")
        payload = (open_payload(sealed, kek) if self._memory is None
                   else open_payload(sealed, kek, self._memory.allocator(cfg.name)))
        timeout_s = cfg.timeout_s or float(self.config["server.request_timeout_s"])
        ctx = ModelContext(cfg, manifest, split_files(manifest, payload), self.metrics,
                           runtime_options(cfg), timeout_s)
        try:
            served = backend(ctx)
        except LlmosError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{manifest.runtime} runtime refused model {cfg.name!r}: "
                                 f"{type(exc).__name__}: {exc}",
                                 "check that the pack was made for this runtime version") from exc
        return _Built(manifest, payload, served)

    async def load(self, name: str, config: ModelConfig | None = None) -> ModelStatus:
        """Load (or add, with ``config``) a model. Raises the load error after recording it."""
        if config is not None and name not in self._entries:
            self._entries[name] = _Entry(config, ModelStatus(name, ModelState.UNLOADED,
                                                             since=time.time()))
        entry = self._entry(name)
        async with entry.lock:
            if config is not None and entry.served is None:
                entry.config = config
            if entry.served is not None:
                return entry.status
            loop = asyncio.get_running_loop()
            self._set(entry, entry.status.to(ModelState.LOADING, now=time.time(),
                                             load_time_s=entry.status.load_time_s))
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
                built = await loop.run_in_executor(None, self._build, entry.config, kek)
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
            self._set(entry, entry.status.to(ModelState.READY, now=time.time(),
                                             load_time_s=seconds))
            log.info("model %s %s READY in %.2f s (%d packed -> %d bytes in memory)", name,
                     built.manifest.version, seconds, built.manifest.size_packed,
                     built.manifest.size_plain)
        if not self._starting:
            self._status_line()
        return entry.status

    def _free(self, name: str) -> None:
        if self._memory is not None:
            self._memory.free(name)

    async def unload(self, name: str) -> ModelStatus:
        """Stop serving a model and free its memory; it stays configured (UNLOADED)."""
        entry = self._entry(name)
        async with entry.lock:
            served, entry.served = entry.served, None
            self._set(entry, entry.status.to(ModelState.UNLOADED, now=time.time(),
                                             load_time_s=entry.status.load_time_s))
            if served is not None:
                await asyncio.get_running_loop().run_in_executor(None, served.close)
            entry.payload = None
            del served
            self._free(name)
            log.info("model %s unloaded", name)
        if not self._starting:
            self._status_line()
        return entry.status

    async def remove(self, name: str) -> None:
        """Unload a model and forget it (an admin deleting it)."""
        await self.unload(name)
        del self._entries[name]
        self.metrics.forget(name)

    # --- lifecycle -----------------------------------------------------------------
    async def start(self) -> Health:
        """The start-up pass: key, every configured model, then READY=1."""
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
        else:
            for name, entry in list(self._entries.items()):
                if entry.status.state is ModelState.FAILED:
                    continue  # its pack could not even be read
                self.notifier.working(f"loading model {name}", STEP_TIMEOUT_S)
                # A failure is recorded as the model's status; the others carry on.
                with contextlib.suppress(LlmosError):
                    await self.load(name)
        self._starting = False
        health = self.health()
        (log.info if health.ready else log.warning)("start-up finished: %s", health.summary())
        self.notifier.ready(health.summary())
        return health

    async def stop(self) -> None:
        """Unload every model (the shutdown half of ``start``)."""
        self.notifier.stopping("unloading models")
        for name in list(self._entries):
            try:
                await self.unload(name)
            except Exception:
                log.exception("model %s: unload failed", name)
