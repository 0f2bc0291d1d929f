"""Fixtures of the admin console's tests: sealed packs, and a running server (the API app,
which starts the supervisor, plus the admin app) with a known admin password."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient as _TestClient

from llmos import config
from llmos.admin.password_file import set_password
from llmos.app import LlmOs
from llmos.config import Config, ModelConfig
from llmos.hw.memory import MemoryPool
from llmos.systemd import Notifier
from llmos.vault.kek import Kek, generate_kek
from llmos.vault.keyfile import write_keyfile
from llmos.web.admin.state import ADMIN, AdminOptions, AdminState, DeviceView

from . import models

TestClient = _TestClient[web.Request, web.Application]

PASSWORD = "admin-test-password"


@dataclass(frozen=True)
class Packs:
    dir: Path
    keyfile: Path
    kek: Kek


@pytest.fixture(scope="session")
def packs(tmp_path_factory: pytest.TempPathFactory) -> Packs:
    d = tmp_path_factory.mktemp("admin-packs")
    kek = generate_kek()
    write_keyfile(d / "fleet.key", kek)
    (d / "scaler.sealed").write_bytes(models.sealed_scaler("scaler", kek))
    (d / "foreign.sealed").write_bytes(models.sealed_scaler("foreign", generate_kek()))
    return Packs(d, d / "fleet.key", kek)


def server_config(packs: Packs, state_dir: Path, packs_dir: Path,
                  extra_models: tuple[ModelConfig, ...] = ()) -> Config:
    cfg = config.load(None, {
        "server.state_dir": str(state_dir), "server.packs_dir": str(packs_dir),
        "server.port": 0, "server.admin_port": 0, "keys.provider": "keyfile",
        "keys.keyfile": str(packs.keyfile), "keys.allow_dev_key": True}, environ={})
    models_ = (ModelConfig("scaler", packs.dir / "scaler.sealed"),
               ModelConfig("foreign", packs.dir / "foreign.sealed"), *extra_models)
    return config.finalize(Config(cfg.values, models_, None))


@dataclass(frozen=True)
class AdminServer:
    admin: TestClient
    api: TestClient
    supervisor: LlmOs
    state: AdminState
    tmp: Path


Start = Callable[..., Any]


@pytest.fixture
async def start_admin(aiohttp_client: Any, packs: Packs, tmp_path: Path
                      ) -> AsyncIterator[Start]:
    """``await start_admin(**option_changes)``: the supervisor's API app and the admin app,
    each on its own test server, the admin password set to ``PASSWORD``."""

    pools: list[MemoryPool] = []

    async def start(password: str | None = PASSWORD, devices: DeviceView | None = None,
                    **changes: Any) -> AdminServer:
        packs_dir = tmp_path / "packs"
        packs_dir.mkdir(exist_ok=True)
        cfg = server_config(packs, tmp_path / "state", packs_dir)
        pool = MemoryPool(pin=True)
        pools.append(pool)
        sup = LlmOs(cfg, notifier=Notifier({}), memory=pool)
        options = replace(AdminOptions.from_config(cfg, environ={}),
                          **{"generate_password": False, "sample_interval_s": 0.05, **changes})
        if password is not None:
            set_password(options.password_file, password)
        api: TestClient = await aiohttp_client(sup.api_app())
        admin_app: web.Application = sup.admin_app(options=options, devices=devices,
                                               memory=pool)
        admin: TestClient = await aiohttp_client(admin_app)
        await wait_settled(sup)
        return AdminServer(admin, api, sup, admin_app[ADMIN], tmp_path)

    yield start
    for pool in pools:
        pool.close()


async def wait_settled(sup: LlmOs, timeout_s: float = 60.0) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not sup.health().settled:
        assert loop.time() < deadline, sup.health().summary()
        await asyncio.sleep(0.02)


_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def form_token(html: str) -> str:
    found = _FIELD.search(html)
    assert found, "no csrf_token field in the page"
    return found.group(1)


def page_token(html: str) -> str:
    found = _META.search(html)
    assert found, "no csrf-token meta tag in the page"
    return found.group(1)


async def login(client: TestClient, password: str = PASSWORD) -> str:
    """Log in through the form like a browser; the session's CSRF token."""
    form = await client.get("/login")
    assert form.status == 200
    resp = await client.post("/login", data={"password": password,
                                             "csrf_token": form_token(await form.text()),
                                             "next": "/models"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/models"
    page = await client.get("/models")
    assert page.status == 200
    return page_token(await page.text())
