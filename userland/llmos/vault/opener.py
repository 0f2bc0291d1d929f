"""The vault's run-time face: it releases the fleet key once and opens sealed packs with it.

``PackOpener`` keeps the key (``KeyStatus`` says whether it was released, by which provider,
and why not) and turns a configured pack into its plaintext in the memory pool. A
``Prefetch`` started before the heavy imports is its cache: the key and the payloads it
already opened are taken from it instead of doing that work again; what nobody took is
freed by ``forget_prefetch`` when start-up ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from llmos.config import Config, ModelConfig
from llmos.errors import KeyReleaseError, LlmosError
from llmos.hw.memory import MemoryPool
from llmos.pack.manifest import Manifest
from llmos.state import KeyStatus
from llmos.vault.kek import Kek
from llmos.vault.keys import KeyProvider
from llmos.vault.prefetch import Prefetch
from llmos.vault.sealed import SealedPack, open_into

log = logging.getLogger(__name__)


def describe(exc: LlmosError) -> str:
    """An error as one status line: the message and its hint."""
    return f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message


def read_manifest(path: Path) -> Manifest:
    """The pack's manifest from its clear header (no key needed; blocking)."""
    return SealedPack.open(path).manifest


class PackOpener:
    """Keeps the fleet key and opens packs with it; ``key`` runs on the event loop, ``open``
    in a worker thread."""

    def __init__(self, config: Config, provider: Callable[[Config], KeyProvider],
                 memory: MemoryPool | None, prefetch: Prefetch | None = None) -> None:
        self._config = config
        self._provider_factory = provider
        self._provider: KeyProvider | None = None
        self._memory = memory
        self._prefetch = prefetch
        self._kek: Kek | None = None
        self._lock = asyncio.Lock()
        self.status = KeyStatus(provider=str(config["keys.provider"]))

    async def key(self) -> Kek:
        """The fleet key, released once (KeyReleaseError, recorded in ``status``, if not)."""
        async with self._lock:
            if self._kek is not None:
                return self._kek
            loop = asyncio.get_running_loop()
            early = (None if self._prefetch is None or self._provider is not None
                     else await loop.run_in_executor(None, self._prefetch.key))
            if early is not None:
                return self._released(*early, when=" (while the server started)")
            try:
                if self._provider is None:
                    self._provider = self._provider_factory(self._config)
                provider = self._provider
                kek = await loop.run_in_executor(None, provider.release)
            except Exception as exc:
                err = exc if isinstance(exc, LlmosError) else KeyReleaseError(
                    f"{type(exc).__name__}: {exc}", "see the server log")
                self.status = KeyStatus(self.status.provider, released=False,
                                        reason=describe(err),
                                        details=self._provider.describe() if self._provider
                                        else {})
                log.error("fleet key unavailable (%s): %s", self.status.provider, describe(err))
                raise KeyReleaseError(f"fleet key unavailable: {err.message}", err.hint) from exc
            return self._released(provider, kek)

    def _released(self, provider: KeyProvider, kek: Kek, when: str = "") -> Kek:
        self._provider, self._kek = provider, kek
        self.status = KeyStatus(provider.name, released=True,
                                details={"kek_id": kek.id, **provider.describe()})
        log.info("fleet key %s released by the %s provider%s", kek.id, provider.name, when)
        return kek

    def open(self, cfg: ModelConfig, kek: Kek, accept: Callable[[Manifest], object],
             owner: str | None = None) -> tuple[Manifest, memoryview]:
        """Authenticate, decrypt and decompress ``cfg``'s pack into the memory pool (or
        take what the prefetch opened) once ``accept`` (which raises to refuse it) has
        seen its manifest; blocking. ``owner``: whose buffers they are in the pool (the
        model's name unless a second version loads beside the first)."""
        sealed = SealedPack.open(cfg.pack)
        accept(sealed.manifest)
        started = time.perf_counter()
        owner = owner or cfg.name
        payload = None if self._prefetch is None or owner != cfg.name \
            else self._prefetch.take(cfg.name)
        if payload is None:
            payload = open_into(sealed, kek, self._memory, owner)
            log.info("model %s: decrypted, decompressed and verified in %.2f s", cfg.name,
                     time.perf_counter() - started)
        else:
            log.info("model %s: payload taken from the early decryption (waited %.2f s)",
                     cfg.name, time.perf_counter() - started)
        return sealed.manifest, payload

    def forget_prefetch(self) -> None:
        """Start-up is over: free what the prefetch opened and no model took."""
        if self._prefetch is not None:
            self._prefetch.discard()
            self._prefetch = None
