"""Fixtures of the serving tests: sealed packs of real ONNX models, configs, a running app."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from llmos import config
from llmos.app import LlmOs
from llmos.systemd import Notifier
from llmos.vault.kek import Kek, generate_kek
from llmos.vault.keyfile import write_keyfile

from . import models

Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True)
class Packs:
    dir: Path
    keyfile: Path
    w: np.ndarray  # the affine model's weights (their bytes are a plaintext fragment)
    b: np.ndarray
    slow_w: bytes  # a fragment of the slow model's plaintext


@pytest.fixture(scope="session")
def packs(tmp_path_factory: pytest.TempPathFactory) -> Packs:
    d = tmp_path_factory.mktemp("packs")
    kek: Kek = generate_kek()
    write_keyfile(d / "fleet.key", kek)
    seed = secrets.randbits(64)  # weights no other process on this machine has
    affine, w, b = models.affine(seed)
    slow, slow_weights = models.slow(seed + 1)
    models.write(d / "alpha.llmos", models.sealed_pack(affine, "alpha", kek))
    models.write(d / "slow.llmos", models.sealed_pack(slow, "slow", kek))
    models.write(d / "broken.llmos", models.tamper(models.sealed_pack(affine, "broken", kek)))
    models.write(d / "wrongkey.llmos", models.sealed_pack(affine, "wrongkey", generate_kek()))
    return Packs(d, d / "fleet.key", w, b, bytes(slow_weights.tobytes()[4096:4160]))


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, sections: dict[str, dict[str, Any]],
                 model_entries: list[dict[str, Any]]) -> Path:
    lines: list[str] = []
    for section, table in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    for entry in model_entries:
        lines.append("[[models]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in entry.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


MAX_BODY = 256 * 1024


def standard_config(packs: Packs, tmp_path: Path, control: bool = True, **keys: Any) -> Path:
    """The serving tests' configuration; ``keys`` go to [keys], ``control`` is
    server.repository_control (load/unload over the API)."""
    return write_config(
        tmp_path / "llmos.toml",
        {"server": {"host": "127.0.0.1", "port": 0, "admin_port": 0,
                    "max_body_bytes": MAX_BODY, "state_dir": str(tmp_path / "state"),
                    "packs_dir": str(packs.dir), "repository_control": control},
         "keys": {"provider": "keyfile", "keyfile": str(packs.keyfile), "allow_dev_key": True,
                  **keys}},
        [{"name": "alpha", "pack": "alpha.llmos", "max_queue_delay_ms": 1.0},
         {"name": "slow", "pack": "slow.llmos", "max_batch_size": 1, "queue_size": 2},
         {"name": "deadline", "pack": "slow.llmos", "timeout_s": 0.0001},
         {"name": "broken", "pack": "broken.llmos"},
         {"name": "wrongkey", "pack": "wrongkey.llmos"}])


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(30)
    yield sock, str(path)
    sock.close()


async def wait_settled(client: Client, timeout_s: float = 60) -> dict[str, Any]:
    """Poll /health until the start-up pass is over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        resp = await client.get("/health")
        doc: dict[str, Any] = await resp.json()
        if doc["status"] != "starting":
            return doc
        assert loop.time() < deadline, f"still starting: {doc}"
        await asyncio.sleep(0.02)


Start = Callable[..., Any]


@pytest.fixture
async def start_app(aiohttp_client: Any) -> AsyncIterator[Start]:
    """Start the API app on a test server: ``await start_app(config_path, environ=...)``."""

    async def start(path: Path, environ: dict[str, str] | None = None
                    ) -> tuple[Client, LlmOs]:
        cfg = config.load(path, environ={})
        sup = LlmOs(cfg, notifier=Notifier(environ or {}))
        app: web.Application = sup.api_app()
        client: Client = await aiohttp_client(app)
        return client, sup

    yield start
