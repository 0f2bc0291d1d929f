"""The admin app's settings and its in-memory state, kept under one typed app key."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from llmos.admin.logs import LogRing
from llmos.admin.password import PasswordHash
from llmos.admin.password_file import hash_path
from llmos.admin.ratelimit import LimitPolicy, LoginLimiter
from llmos.admin.series import ChartSeries
from llmos.admin.sessions import SessionPolicy, SessionStore
from llmos.config import Config
from llmos.controllers.devices import HotplugEvent
from llmos.hw.claim import Claim
from llmos.hw.memory import Fallback, OwnerUsage
from llmos.hw.model import Inventory
from llmos.osupdate import system as os_system
from llmos.tls import Certificate
from llmos.vault.uploads import upload_dir


class DeviceView(Protocol):
    """What the Accelerators page reads (``llmos.controllers.devices.DeviceController``)."""

    @property
    def inventory(self) -> Inventory: ...

    def history(self) -> tuple[HotplugEvent, ...]: ...

    def claims(self) -> tuple[Claim, ...]: ...


class MemoryView(Protocol):
    """What the Memory page reads (``llmos.hw.memory.MemoryPool``)."""

    def usage(self) -> tuple[OwnerUsage, ...]: ...

    def fallbacks(self) -> tuple[Fallback, ...]: ...


def _setting(cfg: Config, key: str, default: Any) -> Any:
    """A setting whose table default is None ("derive it"): ``default`` is the derived value."""
    value = cfg.values.get(key)
    return default if value is None else value


@dataclass(frozen=True)
class AdminOptions:
    password_file: Path
    packs_dir: Path
    upload_dir: Path  # where uploads are kept (llmos.vault.uploads)
    generate_password: bool  # demo mode: make a random password when none is set
    under_systemd: bool  # logs come from the journal, not the in-process ring
    environ: Mapping[str, str]
    sessions: SessionPolicy = field(default_factory=SessionPolicy)
    limits: LimitPolicy = field(default_factory=LimitPolicy)
    sample_interval_s: float = 1.0
    chart_points: int = 600  # 10 minutes at one sample a second
    chart_window_s: float = 10.0  # rates and quantiles are over this span
    upload_max_bytes: int = 16 * 1024**3
    log_lines: int = 500
    boot_events: int = 30
    llm_model: str | None = None  # the playground's chat model (default: the first LLM)
    embed_model: str | None = None  # the playground's embedding model (default: first one)
    tls: Certificate | None = None  # the listener's certificate, when it speaks HTTPS
    # OS updates (llmos.osupdate): where requests go, where the agent's status is
    os_request_file: Path = Path("/run/llmos/os-update/request")
    os_status_file: Path = Path("/run/llmos-update/status.json")
    image_version: str | None = None  # IMAGE_VERSION of the booted image; None on a host

    @classmethod
    def from_config(cls, cfg: Config, environ: Mapping[str, str] | None = None
                    ) -> AdminOptions:
        env = os.environ if environ is None else environ
        under_systemd = bool(env.get("INVOCATION_ID"))
        state_dir = Path(cfg["server.state_dir"])
        return cls(
            password_file=Path(_setting(cfg, "admin.password_file", hash_path(state_dir))),
            packs_dir=Path(cfg["server.packs_dir"]),
            upload_dir=upload_dir(cfg),
            generate_password=bool(_setting(cfg, "admin.generate_password", not under_systemd)),
            under_systemd=under_systemd,
            environ=dict(env),
            sessions=SessionPolicy(
                idle_s=float(_setting(cfg, "admin.session_idle_s", SessionPolicy.idle_s)),
                max_s=float(_setting(cfg, "admin.session_max_s", SessionPolicy.max_s))),
            upload_max_bytes=int(_setting(cfg, "admin.upload_max_bytes",
                                          cls.upload_max_bytes)),
            os_request_file=cfg["osupdate.request_file"],  # config.py parses them to Path
            os_status_file=cfg["osupdate.status_file"],
            image_version=os_system.image_version(),
        )


@dataclass
class PasswordSlot:
    """The hash logins are checked against (None: no password set, every login refused)."""

    hash: PasswordHash | None = None
    stamp: int | None = None  # mtime_ns of the file it was read from


@dataclass
class AdminState:
    options: AdminOptions
    devices: DeviceView | None
    memory: MemoryView | None
    accelerators_used: Callable[[], dict[str, int]]
    sessions: SessionStore
    limiter: LoginLimiter
    series: ChartSeries
    logs: LogRing
    password: PasswordSlot = field(default_factory=PasswordSlot)
    started: float = field(default_factory=time.time)
    clock: Callable[[], float] = time.time
    # scrypt takes ~0.1 s and 32 MiB: at most two at once, off the event loop
    hashing: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))

    @classmethod
    def create(cls, options: AdminOptions, devices: DeviceView | None = None,
               memory: MemoryView | None = None,
               clock: Callable[[], float] = time.time,
               accelerators_used: Callable[[], dict[str, int]] = dict) -> AdminState:
        return cls(options, devices, memory, accelerators_used, SessionStore(options.sessions),
                   LoginLimiter(options.limits),
                   ChartSeries(options.chart_points, options.chart_window_s),
                   LogRing(options.log_lines), clock=clock)


ADMIN = web.AppKey("admin", AdminState)
