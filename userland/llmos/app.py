"""The composition root: every part of the server is built here, and started and stopped here.

``LlmOs(config, ...)`` builds, in this order (each part gets what it uses, nothing more):

1. the serving metrics (a Prometheus registry of this server's own);
2. the vault's ``PackOpener`` (it releases the fleet key and opens sealed packs; the
   ``Prefetch`` started by ``llmos serve`` before the heavy imports is its cache);
3. the ``ModelRegistry`` with every backend (tensor, embedding, causal LM), the reconciler's
   target;
4. the ``DeviceController`` (udev inventory and hot-plug -> reconcile), when given sources;
5. the ``ResourceView`` (memory pool and accelerators -> gauges and warnings);
6. the ``DataPlane`` every transport calls;
7. the web apps, on request (``api_app``, ``admin_app``): they only mount routes on the
   data plane; the API app's cleanup context runs ``start`` and ``stop`` (aiohttp owns the
   lifecycle, systemd the restarts).

``start`` (in the background, so /health answers meanwhile), in order: reserve the weight
memory pool; read every pack's clear header; release the fleet key (if that fails the server
stays up and every model is UNAVAILABLE with the reason); place and load the models (the
device controller scans, claims and reconciles; without one they are planned against an
empty inventory); free what the prefetch opened and nobody took; watch the upload folder
for packs copied there (``llmos.dropins``); READY=1. ``stop`` undoes it in reverse: the
watch stopped, models unloaded, devices released, memory closed.

READY=1 means "start-up is over": every configured model is READY or has *definitively*
failed. Withholding it would make systemd kill the service at TimeoutStartSec= and restart it
forever; readiness for traffic is what /health and /v2/health/ready say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace

from aiohttp import web

from llmos.apikeys import load as load_api_keys
from llmos.config import Config
from llmos.controllers.devices import DeviceController, EventSource
from llmos.dataplane import DataPlane
from llmos.dropins import DropFolder
from llmos.errors import KeyReleaseError
from llmos.hw import priority
from llmos.hw.awake import CpuAwake
from llmos.hw.claim import Claimer
from llmos.hw.memory import MemoryPool
from llmos.hw.model import Inventory
from llmos.hw.usage import process_usage
from llmos.hw.view import ResourceView
from llmos.llm.backend import KIND as CAUSAL_LM
from llmos.llm.backend import causal_lm_backend
from llmos.osupdate import system as os_system
from llmos.registry import ModelRegistry
from llmos.serving.backend import Backend, tensor_backend
from llmos.serving.metrics import ServingMetrics
from llmos.serving.workers import CRASHES
from llmos.state import Health, Overall, assess
from llmos.systemd import STEP_TIMEOUT_S, Notifier, Progress
from llmos.tls import Certificate, certificate
from llmos.vault.keys import KeyProvider, provider_from_config
from llmos.vault.opener import PackOpener
from llmos.vault.prefetch import Prefetch
from llmos.vault.uploads import upload_dir
from llmos.web.admin.app import build_admin_app
from llmos.web.admin.state import AdminOptions, DeviceView, MemoryView
from llmos.web.admission import Limits
from llmos.web.api.app import build_api_app
from llmos.web.api_keys import middleware_for as key_middleware_for
from llmos.web.drain import DRAIN, Drain
from llmos.web.keys import KEYS_REQUIRED
from llmos.web.server import Listener, Server
from llmos.web.server import run as run_server

log = logging.getLogger(__name__)

#: Every backend, by manifest kind.
BACKENDS: Mapping[str, Backend] = {"tensor": tensor_backend, "embedding": tensor_backend,
                                   CAUSAL_LM: causal_lm_backend}
STARTUP_TASK = web.AppKey("startup_task", asyncio.Task)


@dataclass(frozen=True)
class DeviceSources:
    """Where the device controller looks: ``llmos serve`` passes the machine's (udev
    inventory, netlink monitor, claimer), tests a scripted inventory."""

    scan: Callable[[], Inventory]
    monitor: EventSource | None = None
    claimer: Claimer | None = None
    settle_s: float = 0.25


def _context(cert: Certificate | None) -> ssl.SSLContext | None:
    return None if cert is None else cert.context()


class LlmOs:
    """The server, put together: its parts are attributes, ``start``/``stop`` its life."""

    def __init__(
        self,
        config: Config,
        *,
        notifier: Notifier | None = None,
        provider: Callable[[Config], KeyProvider] = provider_from_config,
        memory: MemoryPool | None = None,
        backends: Mapping[str, Backend] = BACKENDS,
        devices: DeviceSources | None = None,
        prefetch: Prefetch | None = None,
    ) -> None:
        """``memory``: where decrypted weights go (None: plain process memory); its
        lifecycle (reserve, close) is the server's. ``devices``: follow these accelerators
        (None: none, every model is planned against an empty inventory). ``prefetch``: the
        key and payloads opened while the server started."""
        self.config = config
        priority.configure(int(config["server.worker_nice"]))  # before any worker starts
        self.notifier = notifier or Notifier()
        self.memory = memory
        self.metrics = ServingMetrics()
        self.drain = Drain()  # SIGTERM: not ready, then in-flight requests finish
        self.opener = PackOpener(config, provider, memory, prefetch)
        self.registry = ModelRegistry(config, self.opener, backends, self.metrics, memory,
                                      Progress(self.notifier.working, self._status_line))
        self.devices = None if devices is None else DeviceController(
            devices.scan, self.registry.reconciler, monitor=devices.monitor,
            claimer=devices.claimer, settle_s=devices.settle_s)
        self.resources = ResourceView(memory, self._inventory)
        self.awake = CpuAwake(float(config["server.cpu_awake_s"]),  # cores awake while busy
                              busy=lambda: self.drain.in_flight > 0)
        self.metrics.watch_resources(lambda: (*self.resources.gauges(), *self.awake.gauges()),
                                     self.resources.fallback_counts)
        self.dataplane = DataPlane(self.registry, self.metrics, self.health, self.awake.touch)
        watch_s = float(config["admin.upload_watch_s"])
        self.drops = DropFolder(self.registry, upload_dir(config), watch_s) if watch_s else None
        self._watch: asyncio.Task[None] | None = None
        self.startup_error: str | None = None  # set when start() failed unexpectedly

    # --- what the server says about itself -----------------------------------------------
    def _inventory(self) -> Inventory:
        return self.devices.inventory if self.devices is not None else Inventory()

    def health(self) -> Health:
        h = assess(self.opener.status, self.registry.statuses(),
                   self.registry.progress.starting,
                   (*self.resources.warnings(), *CRASHES.warnings()))
        if self.startup_error is None:
            return h
        return replace(h, overall=Overall.UNAVAILABLE, settled=True,
                       reasons=(self.startup_error, *h.reasons))

    def _status_line(self) -> None:
        self.notifier.status(self.health().summary())

    # --- start and stop ------------------------------------------------------------------
    async def _place_models(self) -> None:
        """The first reconcile: every model placed and loaded (or failed) on return."""
        if self.devices is None:
            await self.registry.reconciler(Inventory())
            return
        try:
            await self.devices.start()
        except Exception as exc:  # claiming or scanning failed: serve what was seen
            log.error("the device controller did not start (%s: %s): models are placed on "
                      "the accelerators found so far and hot-plug is not followed",
                      type(exc).__name__, exc)
            await self.registry.reconciler(self.devices.inventory)

    async def start(self) -> Health:
        """The start-up pass: memory, manifests, key, devices and models, then READY=1."""
        if self.memory is not None:
            self.notifier.working("reserving weight memory", STEP_TIMEOUT_S)
            await asyncio.to_thread(self.memory.reserve)
        await self.registry.read_manifests()
        self.notifier.working("releasing the fleet key", STEP_TIMEOUT_S)
        try:
            await self.opener.key()
        except KeyReleaseError as exc:
            self.registry.key_unavailable(exc)
        self.notifier.working("placing models on devices", STEP_TIMEOUT_S)
        await self._place_models()
        self.opener.forget_prefetch()
        self.registry.progress.starting = False
        if self.drops is not None:  # packs copied into the upload folder from now on
            self._watch = asyncio.create_task(self.drops.run(), name="llmos-drop-folder")
        health = self.health()
        (log.info if health.ready else log.warning)("start-up finished: %s; %s",
                                                     health.summary(),
                                                     process_usage().describe())
        self.notifier.ready(health.summary())
        return health

    async def start_or_report(self) -> None:
        """``start``; an unexpected failure leaves the server up, /health (503) and
        STATUS= saying why, and READY=1 sent: a fault that will not go away by itself
        must not become a restart loop that ends with the unit failed."""
        try:
            await self.start()
        except Exception as exc:
            log.exception("start-up failed")
            self.startup_error = f"start-up failed: {type(exc).__name__}: {exc}"
            self.registry.progress.starting = False
            self.notifier.ready(self.startup_error)

    async def stop(self) -> None:
        """Undo ``start``: unload every model (weights freed), release the devices, close
        the memory pool. Hot-plug no longer loads anything from here on."""
        self.notifier.stopping("unloading models")
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self.awake.close()
        await self.registry.unload_all()
        if self.devices is not None:
            await self.devices.stop()
        if self.memory is not None:
            self.memory.close()

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """Start-up runs in the background so /health answers (503, with reasons)."""
        app[STARTUP_TASK] = asyncio.create_task(self.start_or_report(), name="llmos-start")
        yield
        task = app[STARTUP_TASK]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.stop()

    @staticmethod
    async def _executor(app: web.Application) -> AsyncIterator[None]:
        """The loop's default executor (``asyncio.to_thread``) at the workers' priority."""
        pool = priority.executor()
        if pool is not None:
            asyncio.get_running_loop().set_default_executor(pool)
        yield

    async def _watchdog(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self.notifier.watchdog(), name="sd-watchdog")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # --- the web apps ----------------------------------------------------------------------
    def api_app(self) -> web.Application:
        """The inference API (/health, /v2, /metrics, /v1); its life is the server's."""
        cfg = self.config
        store = load_api_keys(cfg["server.api_keys_file"], os.environ)
        keys = key_middleware_for(store, str(cfg["server.host"]), self.metrics.registry)
        app = build_api_app(self.dataplane, int(cfg["server.max_body_bytes"]),
                            Limits.from_config(cfg), (self.drain.middleware(), keys),
                            image_version=os_system.image_version())
        app[DRAIN] = self.drain
        app[KEYS_REQUIRED] = store.enabled
        app.cleanup_ctx.append(self._executor)
        app.cleanup_ctx.append(self._watchdog)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    def admin_app(self, options: AdminOptions | None = None, devices: DeviceView | None = None,
                  memory: MemoryView | None = None) -> web.Application:
        """The admin console (its own listener). ``devices`` and ``memory`` default to the
        server's own device controller and memory pool."""
        return build_admin_app(
            self.dataplane, options or AdminOptions.from_config(self.config),
            devices if devices is not None else self.devices,
            memory if memory is not None else self.memory,
            self.resources.accelerators_used)

    def server(self) -> Server:
        """The API app on server.host:port, the admin app on server.admin_host:admin_port;
        the API app first, so the server's parts are the last thing to go."""
        cfg = self.config
        tls = {role: certificate(cfg, os.environ, role) for role in ("api", "admin")}
        for role, cert in tls.items():
            if cert is not None:
                log.info("%s TLS certificate (%s), SHA-256 fingerprint %s", role, cert.origin,
                         cert.fingerprint)
        options = replace(AdminOptions.from_config(cfg), tls=tls["admin"])
        return Server((
            Listener("api", self.api_app(), str(cfg["server.host"]), int(cfg["server.port"]),
                     _context(tls["api"]), cancel_on_disconnect=True),
            Listener("admin", self.admin_app(options), str(cfg["server.admin_host"]),
                     int(cfg["server.admin_port"]), _context(tls["admin"]))),
            max_connections=int(cfg["server.max_connections"]),
            idle_timeout_s=float(cfg["server.idle_timeout_s"]))

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (``llmos serve``)."""
        cfg = self.config
        await run_server(self.server(), self.notifier,
                         lambda: self.drain.run(float(cfg["server.drain_s"]),
                                                float(cfg["server.drain_grace_s"])))
