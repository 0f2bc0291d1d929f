"""Opening the sealed packs while the server starts.

At boot the server's own imports (aiohttp, numpy, the runtimes' bindings) take longer under
emulation than decrypting the largest pack, and need only one of the two CPUs. So the
``serve`` command starts a ``Prefetch`` first: a thread that releases the fleet key and
decrypts the configured packs, largest first, into the memory pool while the rest imports.

The supervisor then takes the key (``key``) and each payload (``take``) instead of doing
that work itself. A pack the thread has not begun is left to the supervisor (``take`` says
so at once), one it is decrypting is waited for. Nothing is reported from here: a step that
failed in the thread is simply done again by the supervisor, which reports it as always.
Whatever nobody took is freed when start-up ends (``discard``).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from llmos.config import ModelConfig
from llmos.hw.memory import MemoryPool
from llmos.vault.kek import Kek
from llmos.vault.keys import KeyProvider
from llmos.vault.sealed import SealedPack, open_into

log = logging.getLogger(__name__)


class _State(enum.Enum):
    PENDING = "pending"  # nobody has begun it
    OPENING = "opening"  # the thread is decrypting it
    DONE = "done"  # decrypted (payload set), or failed (payload None)
    GONE = "gone"  # taken by the supervisor, or discarded


@dataclass
class _Pack:
    config: ModelConfig
    state: _State = _State.PENDING
    payload: memoryview | None = None


class Prefetch:
    def __init__(self, provider: KeyProvider, models: Sequence[ModelConfig],
                 memory: MemoryPool | None) -> None:
        self._provider = provider
        self._memory = memory
        self._packs = {m.name: _Pack(m) for m in models}
        self._changed = threading.Condition()
        self._key_tried = threading.Event()
        self._kek: Kek | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="llmos-prefetch", daemon=True)

    def start(self) -> Prefetch:
        self._thread.start()
        return self

    # --- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._kek = self._provider.release()
        except Exception as exc:  # the supervisor releases it again and reports why
            log.debug("early key release failed: %s", exc)
        finally:
            self._key_tried.set()
        if self._kek is None:
            return
        headers = [(pack, _header(pack.config)) for pack in self._packs.values()]
        headers.sort(key=lambda ps: -1 if ps[1] is None else ps[1].manifest.size_packed,
                     reverse=True)
        for pack, sealed in headers:
            with self._changed:
                if self._closed or pack.state is not _State.PENDING:
                    continue
                pack.state = _State.OPENING
            payload = None if sealed is None else self._open(pack.config, sealed, self._kek)
            with self._changed:
                pack.payload, pack.state = payload, _State.DONE
                if self._closed:
                    self._drop(pack)
                self._changed.notify_all()

    def _open(self, cfg: ModelConfig, sealed: SealedPack, kek: Kek) -> memoryview | None:
        started = time.perf_counter()
        try:
            payload = open_into(sealed, kek, self._memory, cfg.name)
        except Exception as exc:  # the supervisor opens it again and reports why
            log.debug("model %s: early decryption failed: %s", cfg.name, exc)
            if self._memory is not None:
                self._memory.free(cfg.name)
            return None
        log.info("model %s: decrypted and decompressed in %.2f s while the server started",
                 cfg.name, time.perf_counter() - started)
        return payload

    def _drop(self, pack: _Pack) -> None:
        """Free an untaken payload (the caller holds ``_changed``)."""
        if pack.payload is not None and self._memory is not None:
            self._memory.free(pack.config.name)
        pack.payload, pack.state = None, _State.GONE

    # --- the supervisor's side -----------------------------------------------------------
    def key(self) -> tuple[KeyProvider, Kek] | None:
        """The provider and the key it released (None: it failed; try again). Blocks
        until the thread has tried."""
        self._key_tried.wait()
        return None if self._kek is None else (self._provider, self._kek)

    def take(self, name: str) -> memoryview | None:
        """The decrypted payload of model ``name``, now the caller's (its pool buffers are
        the model's, as if the caller had decrypted it); None: decrypt it yourself."""
        with self._changed:
            pack = self._packs.get(name)
            if pack is None or pack.state is _State.GONE:
                return None
            if pack.state is _State.PENDING:  # not begun: the caller does it, not the thread
                pack.state = _State.GONE
                return None
            self._changed.wait_for(lambda: pack.state in (_State.DONE, _State.GONE))
            payload, pack.payload, pack.state = pack.payload, None, _State.GONE
            return payload

    def discard(self) -> None:
        """Start-up is over: free what nobody took; the thread begins nothing more."""
        with self._changed:
            self._closed = True
            for pack in self._packs.values():
                if pack.state is _State.DONE:
                    self._drop(pack)


def _header(cfg: ModelConfig) -> SealedPack | None:
    """The pack's header (None: unreadable; largest-first puts it last, the supervisor
    reports it)."""
    try:
        return SealedPack.open(cfg.pack)
    except Exception:
        return None
