"""Packs copied into the upload folder (not through the admin page) are taken by the
server's watch: a new version updates its model, a new model is added, a half-copied pack
waits until it is whole, a bad one is set aside and changes nothing."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from llmos.app import LlmOs
from llmos.config import Config
from llmos.dropins import SETTLE_S
from llmos.hw.memory import MemoryPool
from llmos.state import ModelState, UpdateState
from llmos.systemd import Notifier
from llmos.vault.uploads import upload_dir

from . import models
from .conftest import Packs, server_config, wait_settled

Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True)
class Watched:
    root: LlmOs
    api: Client
    folder: Path


@pytest.fixture
async def watched(packs: Packs, tmp_path: Path, aiohttp_client: Any
                  ) -> AsyncIterator[Watched]:
    cfg = server_config(packs, tmp_path / "state", tmp_path / "packs")
    cfg = Config({**cfg.values, "admin.upload_watch_s": 0.05}, cfg.models, None)
    pool = MemoryPool(pin=True)
    root = LlmOs(cfg, notifier=Notifier({}), memory=pool)
    api: Client = await aiohttp_client(root.api_app())
    await wait_settled(root)
    folder = upload_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    yield Watched(root, api, folder)
    await api.close()
    pool.close()


async def _until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _copy(folder: Path, name: str, blob: bytes) -> Path:
    """As a careful operator copies: under another name, then renamed into place."""
    part = folder / f".{name}.part"
    part.write_bytes(blob)
    return part.replace(folder / name)


async def _answer(w: Watched, model: str) -> tuple[str, list[float]]:
    resp = await w.api.post(f"/v2/models/{model}/infer", json={"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    return doc["model_version"], doc["outputs"][0]["data"]


async def test_a_new_version_copied_in_updates_the_model(watched: Watched,
                                                         packs: Packs) -> None:
    w, registry = watched, watched.root.registry
    assert await _answer(w, "scaler") == ("1", [2, 4, 6, 8])
    _copy(w.folder, "scaler-2.sealed", models.sealed_scaler("scaler", packs.kek, "2", factor=3))
    await _until(lambda: (u := registry.status("scaler").update) is not None
                 and u.state is UpdateState.DONE)
    assert registry.status("scaler").version == "2"
    assert registry.model_config("scaler").pack == w.folder / "scaler-2.sealed"
    assert await _answer(w, "scaler") == ("2", [3, 6, 9, 12])


async def test_a_half_copied_pack_is_taken_once_whole(watched: Watched, packs: Packs) -> None:
    w, registry = watched, watched.root.registry
    blob = models.sealed_scaler("scaler", packs.kek, "2", factor=3)
    target = w.folder / "scaler-2.sealed"
    target.write_bytes(blob[:-100])  # a copy that stalled near its end, straight into place
    stalled = time.time() - 10 * SETTLE_S  # old enough to be looked at: only its length
    os.utime(target, (stalled, stalled))  # tells it is not whole
    await asyncio.sleep(0.5)  # ten looks at the folder
    assert registry.status("scaler").update is None and target.exists()
    target.write_bytes(blob)
    await _until(lambda: registry.status("scaler").version == "2")
    assert await _answer(w, "scaler") == ("2", [3, 6, 9, 12])


async def test_a_new_model_copied_in_is_added(watched: Watched, packs: Packs) -> None:
    w, registry = watched, watched.root.registry
    _copy(w.folder, "fresh-1.sealed", models.sealed_scaler("fresh", packs.kek))
    await _until(lambda: "fresh" in registry.names()
                 and registry.status("fresh").state is ModelState.READY)
    assert await _answer(w, "fresh") == ("1", [2, 4, 6, 8])


async def test_bad_packs_are_set_aside_and_the_old_version_serves_on(
        watched: Watched, packs: Packs) -> None:
    w, registry = watched, watched.root.registry
    blob = bytearray(models.sealed_scaler("scaler", packs.kek, "2", factor=3))
    blob[-10] ^= 0x01  # the last chunk no longer authenticates
    _copy(w.folder, "scaler-2.sealed", bytes(blob))
    await _until(lambda: (w.folder / "scaler-2.sealed.failed").exists())
    update = registry.status("scaler").update
    assert update is not None and update.state is UpdateState.FAILED
    assert "scaler-2.sealed" not in [p.name for p in w.folder.iterdir()]
    _copy(w.folder, "scaler-again.sealed", models.sealed_scaler("scaler", packs.kek, "1"))
    await _until(lambda: (w.folder / "scaler-again.sealed.failed").exists())
    update = registry.status("scaler").update
    assert update is not None and "already serves version '1'" in update.reason
    assert (registry.status("scaler").state, registry.status("scaler").version) == \
        (ModelState.READY, "1")
    assert await _answer(w, "scaler") == ("1", [2, 4, 6, 8])
