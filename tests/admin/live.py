"""A real server in a background thread (its own event loop), for a real browser to use:
the supervisor, the API app and the admin app, each on a TCP port of 127.0.0.1.

Models: the tiny ``scaler`` tensor model, ``foreign`` (sealed for another fleet key, so
it FAILS with a reason), an embedding model and, when the demo packs are built, the demo
LLM. The demo packs (``make demo-packs``: build/demo sealed with build/keys/fleet.key, or
``$LLMOS_DEMO_DIR`` with its dev-fleet.key) are used when present; otherwise the
embedding model is the tiny one from ``tiny_embedding`` and there is no LLM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from llmos.admin.password_file import set_password
from llmos.app import LlmOs
from llmos.config import Config, ModelConfig
from llmos.controllers.devices import DeviceController
from llmos.errors import LlmosError
from llmos.hw.memory import MemoryPool
from llmos.systemd import Notifier
from llmos.vault.kek import Kek, generate_kek
from llmos.vault.keyfile import read_keyfile, write_keyfile
from llmos.vault.sealed import SealedPack
from llmos.web.admin.state import AdminOptions

from . import models
from .conftest import PASSWORD, Packs, server_config
from .devices import Machine, amd_gpu
from .tiny_embedding import sealed_tiny_embedding

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DemoPacks:
    key: Path
    models: tuple[ModelConfig, ...]  # by kind: embedding, causal-lm


def _sealed_files(folder: Path) -> Iterator[tuple[Path, SealedPack]]:
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        if path.is_file() and path.suffix not in (".key", ".json", ".toml"):
            with contextlib.suppress(LlmosError, ValueError):
                yield path, SealedPack.open(path)


def find_demo_packs() -> DemoPacks | None:
    candidates = []
    if os.environ.get("LLMOS_DEMO_DIR"):
        d = Path(os.environ["LLMOS_DEMO_DIR"])
        candidates.append((d, d / "dev-fleet.key"))
    candidates.append((REPO / "build/demo", REPO / "build/keys/fleet.key"))
    for folder, key in candidates:
        if not key.is_file():
            continue
        found: dict[str, ModelConfig] = {}
        for path, sealed in _sealed_files(folder):  # per kind, the smallest pack loads fastest
            kind = sealed.manifest.kind
            if kind in ("embedding", "causal-lm") and (
                    kind not in found or path.stat().st_size < found[kind].pack.stat().st_size):
                found[kind] = ModelConfig(sealed.manifest.name, path, max_tokens=64)
        if found:
            return DemoPacks(key, tuple(found.values()))
    return None


@dataclass
class LiveServer:
    tmp: Path
    password: str = PASSWORD
    admin_url: str = ""
    api_url: str = ""
    llm: str | None = None  # the LLM's model name, when there is one
    embedder: str | None = None
    supervisor: LlmOs | None = None
    machine: Machine | None = None
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)
    _closers: list[Any] = field(default_factory=list)

    # --- packs and config ------------------------------------------------------------
    def _config(self) -> tuple[Config, AdminOptions]:
        demo = find_demo_packs()
        kek: Kek = read_keyfile(demo.key) if demo else generate_kek()
        packs_dir = self.tmp / "packs"
        packs_dir.mkdir(parents=True, exist_ok=True)
        own = self.tmp / "own-packs"
        own.mkdir(exist_ok=True)
        keyfile = own / "fleet.key"
        write_keyfile(keyfile, kek)
        (own / "scaler.sealed").write_bytes(models.sealed_scaler("scaler", kek))
        (own / "foreign.sealed").write_bytes(models.sealed_scaler("foreign", generate_kek()))
        extra: list[ModelConfig] = list(demo.models) if demo else []
        if not any(_kind(m) == "embedding" for m in extra):
            blob = sealed_tiny_embedding(own, "tiny-embed", kek)
            if blob is not None:
                (own / "tiny-embed.sealed").write_bytes(blob)
                extra.append(ModelConfig("tiny-embed", own / "tiny-embed.sealed"))
        self.llm = next((m.name for m in extra if _kind(m) == "causal-lm"), None)
        self.embedder = next((m.name for m in extra if _kind(m) == "embedding"), None)
        cfg = server_config(Packs(own, keyfile, kek), self.tmp / "state", packs_dir,
                            tuple(extra))
        options = replace(AdminOptions.from_config(cfg, environ={}), generate_password=False,
                          os_request_file=self.tmp / "os-update" / "request",
                          os_status_file=self.tmp / "os-update-status.json")
        set_password(options.password_file, self.password)
        return cfg, options

    # --- lifecycle -----------------------------------------------------------------------
    async def _start(self, cfg: Config, options: AdminOptions) -> None:
        pool = MemoryPool(pin=True)
        self._closers.append(pool.close)
        self.machine = Machine(self.tmp / "root")
        self.machine.plug(amd_gpu("0000:03:00.0", 0))
        devices: DeviceController = self.machine.controller()
        await devices.start()
        self._closers.append(devices.stop)
        sup = LlmOs(cfg, notifier=Notifier({}), memory=pool)
        self.supervisor = sup
        for role, app in (("api", sup.api_app()),
                          ("admin", sup.admin_app(options=options, devices=devices,
                                              memory=pool))):
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            setattr(self, f"{role}_url", f"http://{host}:{port}")
        while not sup.health().settled:
            await asyncio.sleep(0.05)

    async def _stop(self) -> None:
        while self._runners:
            await self._runners.pop().cleanup()
        for close in reversed(self._closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result

    def call(self, coro: Any, timeout_s: float = 600.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout_s)

    def start(self) -> LiveServer:
        cfg, options = self._config()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-server",
                                        daemon=True)
        self._thread.start()
        self.call(self._start(cfg, options))
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self._stop(), 60.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()


def _kind(m: ModelConfig) -> str:
    try:
        return SealedPack.open(m.pack).manifest.kind
    except LlmosError:
        return ""
