"""From a sealed pack to a served model: open it with the vault, build it with its backend.

``ModelLoader.build`` runs in a worker thread: the ``PackOpener`` authenticates, decrypts
and decompresses the pack into the memory pool (once the backend for its manifest's
``kind`` is known to exist), then the backend builds and warms the runtime(s) on the
placement's device. A failure leaves nothing behind: the model's pool buffers are freed and
the traceback frames that still reference the plaintext are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from llmos.config import Config, ModelConfig
from llmos.errors import LlmosError, ModelLoadError, PrepackedWeightsStillRead
from llmos.hw.memory import MemoryPool
from llmos.pack.container import split_files
from llmos.pack.manifest import Manifest
from llmos.serving.backend import Backend, ModelContext, Served, keep_all, runtime_options
from llmos.serving.metrics import ServingMetrics
from llmos.serving.prepack_memo import PrepackMemo
from llmos.vault.kek import Kek
from llmos.vault.opener import PackOpener

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    manifest: Manifest
    payload: memoryview  # the plaintext, kept alive while the model serves
    served: Served


def drop_frames(exc: BaseException | None) -> None:
    """Forget the tracebacks of a failed load: their frames still reference the plaintext
    buffers, which could then not be unmapped and wiped memory would linger."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


class ModelLoader:
    def __init__(self, config: Config, opener: PackOpener, backends: Mapping[str, Backend],
                 metrics: ServingMetrics, memory: MemoryPool | None,
                 memo: PrepackMemo | None = None) -> None:
        """``memo``: where the verdicts "this machine's kernels read this pack's weights in
        place" are kept between starts (None: learnt again at every load)."""
        self._config = config
        self._memo = memo
        self._opener = opener
        self._backends = dict(backends)
        self._metrics = metrics
        self._memory = memory

    def _backend(self, manifest: Manifest) -> Backend:
        backend = self._backends.get(manifest.kind)
        if backend is None:
            raise ModelLoadError(f"no serving backend for {manifest.kind!r} packs in this build",
                                 f"serve it with a build that supports {manifest.kind} models")
        return backend

    def build(self, cfg: ModelConfig, device: str, kek: Kek, owner: str | None = None
              ) -> Loaded:
        """Open ``cfg``'s pack and build its runtime(s) on ``device`` (blocking); its
        memory belongs to ``owner`` (default: the model's name). Where the runtime turns
        out to read the weights it was to hold prepacked (this CPU's kernels do not
        prepack them), the pack is opened and built again with prepacking off."""
        owner = owner or cfg.name
        try:
            return self._build(cfg, device, kek, owner, seen_now=False)
        except PrepackedWeightsStillRead as exc:
            if cfg.prepack is not None:  # asked for by the model's config: its error
                raise
            log.warning("model %s: %s; loading it again with prepack = false (its weights "
                        "stay in the pack's memory)", cfg.name, exc.message)
            drop_frames(exc)
            self.free(owner)
        return self._build(cfg, device, kek, owner, seen_now=True)

    def _reads_in_place(self, cfg: ModelConfig, device: str, sha256: str, seen_now: bool
                        ) -> bool:
        """Whether this machine's kernels read the pack's weights in place: ``seen_now``
        (this load's first build found it), which the memo keeps for the next start, or
        what the memo kept from an earlier one. Only where the model's config leaves
        prepacking to the loader, and only on the CPU (GPU kernels never read them)."""
        if cfg.prepack is not None or device != "cpu" or self._memo is None:
            return seen_now
        if seen_now:
            self._memo.remember(sha256)
            return True
        if self._memo.reads_in_place(sha256):
            log.info("model %s: built with prepack = false at once: this machine's kernels "
                     "read its weights in place (learnt at an earlier start)", cfg.name)
            return True
        return False

    def _build(self, cfg: ModelConfig, device: str, kek: Kek, owner: str, seen_now: bool
               ) -> Loaded:
        manifest, payload = self._opener.open(cfg, kek, self._backend, owner)
        in_place = self._reads_in_place(cfg, device, manifest.sha256, seen_now)
        timeout_s = cfg.timeout_s or float(self._config["server.request_timeout_s"])
        release = keep_all if self._memory is None else self._memory.releaser(owner)
        ctx = ModelContext(cfg, manifest, split_files(manifest, payload), self._metrics,
                           runtime_options(cfg, device, in_place), timeout_s, release)
        try:
            return Loaded(manifest, payload, self._backend(manifest)(ctx))
        except LlmosError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{manifest.runtime} runtime refused model {cfg.name!r} on "
                                 f"{device}: {type(exc).__name__}: {exc}",
                                 "check that the pack was made for this runtime version") from exc

    async def load(self, cfg: ModelConfig, device: str, owner: str | None = None) -> Loaded:
        """``build`` in a worker thread once the fleet key is released; a failure frees
        the plaintext and is raised as an LlmosError."""
        kek = await self._opener.key()
        owner = owner or cfg.name
        try:
            return await asyncio.to_thread(self.build, cfg, device, kek, owner)
        except Exception as exc:
            if not isinstance(exc, LlmosError):
                log.exception("model %s: unexpected load failure", cfg.name)
            drop_frames(exc)
            self.free(owner)
            if isinstance(exc, LlmosError):
                raise
            raise ModelLoadError(f"loading model {cfg.name!r} failed: "
                                 f"{type(exc).__name__}: {exc}", "see the server log") from exc

    def held_bytes(self, name: str, manifest: Manifest) -> int:
        """Weight memory a loaded model holds: its pool buffers, else its plaintext."""
        if self._memory is None:
            return manifest.size_plain
        return sum(u.bytes for u in self._memory.usage() if u.owner == name)

    def free(self, name: str) -> None:
        """Give the model's weight memory back (after its runtime closed)."""
        if self._memory is not None:
            self._memory.free(name)

    def rename(self, owner: str, name: str) -> None:
        """The memory of a version loaded beside another becomes the model's own."""
        if self._memory is not None:
            self._memory.rename(owner, name)
