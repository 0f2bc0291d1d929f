"""A causal LM updated while it generates: the running generation keeps streaming from the
old version after the new one took over, and the old version goes once it has ended."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from llmos import config
from llmos.app import LlmOs
from llmos.config import ModelConfig
from llmos.pack.container import read_pack
from llmos.state import UpdateState
from llmos.systemd import Notifier
from llmos.vault.kek import generate_kek
from llmos.vault.keyfile import write_keyfile
from llmos.vault.sealed import seal

from .conftest import THREADS, PackPath

Client = TestClient[web.Request, web.Application]
MODEL = "smollm2"
LONG = 1500  # tokens: a generation still running long after the new version took over


def _sealed(plain: Path, tmp: Path) -> tuple[Path, dict[str, Path]]:
    kek = generate_kek()
    write_keyfile(tmp / "fleet.key", kek)
    manifest, compressed = read_pack(plain)
    packs = {}
    for version in ("1", "2"):
        packs[version] = tmp / f"{MODEL}-{version}.sealed"
        packs[version].write_bytes(seal(dataclasses.replace(manifest, version=version),
                                        compressed, kek))
    return tmp / "fleet.key", packs


async def _events(resp: Any) -> AsyncIterator[dict[str, Any]]:
    async for raw in resp.content:
        line = raw.decode().strip()
        if line.startswith("data: ") and line != "data: [DONE]":
            yield json.loads(line[6:])


async def test_a_generation_streams_on_from_the_old_version(
        llm_pack: PackPath, tmp_path: Path, aiohttp_client: Any) -> None:
    keyfile, packs = _sealed(llm_pack("smollm2"), tmp_path)
    cfg = config.load(None, {
        "server.state_dir": str(tmp_path / "state"), "server.port": 0,
        "server.admin_port": 0, "keys.provider": "keyfile", "keys.keyfile": str(keyfile),
        "keys.allow_dev_key": True}, environ={})
    entry = ModelConfig(MODEL, packs["1"], max_running=2, threads=THREADS, max_tokens=LONG)
    root = LlmOs(config.finalize(config.Config(cfg.values, (entry,))), notifier=Notifier({}))
    client: Client = await aiohttp_client(root.api_app())
    while not root.health().settled:
        await asyncio.sleep(0.05)
    registry = root.registry
    resp = await client.post("/v1/completions", json={
        "model": MODEL, "prompt": "Once upon a time", "max_tokens": LONG,
        "ignore_eos": True, "stream": True})
    assert resp.status == 200
    events = _events(resp)
    await anext(events)  # generating on version 1
    status = await registry.update(MODEL, dataclasses.replace(entry, pack=packs["2"]))
    assert (status.version, status.update and status.update.state) == \
        ("2", UpdateState.DRAINING)
    await asyncio.sleep(1.0)  # time for version 1 to go, if it went while it generates
    assert registry.versions(MODEL) == ("2", "1")  # the stream holds version 1
    for _ in range(20):  # and it streams on, from the old version
        event = await anext(events)
        assert "error" not in event and event["choices"][0]["finish_reason"] is None, event
    assert registry.versions(MODEL) == ("2", "1")
    resp.close()  # the client goes away: its generation is cancelled, version 1 is idle
    for _ in range(600):
        if registry.versions(MODEL) == ("2",):
            break
        await asyncio.sleep(0.05)
    update = registry.status(MODEL).update
    assert update is not None and (update.state, update.reason) == (UpdateState.DONE, ""), \
        update
    answer = await client.post("/v1/completions", json={
        "model": MODEL, "prompt": "Once upon a time", "max_tokens": 4, "ignore_eos": True})
    assert answer.status == 200, await answer.text()
    assert (await answer.json())["usage"]["completion_tokens"] == 4
