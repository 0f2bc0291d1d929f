"""Start-up with the packs opened early (``llmos.vault.prefetch``, what ``llmos serve``
does): the same outcome as without, model for model (tampered and wrong-key packs fail the
same way, reported by the supervisor), and the pool keeps only what loaded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from llmos import config
from llmos.app import LlmOs
from llmos.hw.memory import MemoryPool
from llmos.systemd import Notifier
from llmos.vault.keys import provider_from_config
from llmos.vault.prefetch import Prefetch

from .conftest import Packs, standard_config, wait_settled


async def _settled(aiohttp_client: Any, cfg: config.Config, pool: MemoryPool,
                   prefetch: Prefetch | None) -> tuple[dict[str, Any], LlmOs]:
    sup = LlmOs(cfg, notifier=Notifier({}), memory=pool, prefetch=prefetch)
    app: web.Application = sup.api_app()
    client = await aiohttp_client(app)
    return await wait_settled(client), sup


def _outcome(health: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {name: (m["state"], m["reason"].split(":")[0])
            for name, m in health["models"].items()}


async def test_prefetched_start_up_ends_as_the_plain_one(
        aiohttp_client: Any, packs: Packs, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.load(standard_config(packs, tmp_path), environ={})
    plain_pool, early_pool = MemoryPool(pin=False), MemoryPool(pin=False)
    plain, plain_sup = await _settled(aiohttp_client, cfg, plain_pool, None)
    prefetch = Prefetch(provider_from_config(cfg), cfg.models, early_pool).start()
    prefetch._thread.join(30)  # everything opened early: each load takes its payload
    caplog.set_level(logging.INFO, logger="llmos.vault.opener")
    early, early_sup = await _settled(aiohttp_client, cfg, early_pool, prefetch)
    try:
        assert _outcome(early) == _outcome(plain)
        assert _outcome(early)["alpha"] == ("READY", "")
        assert _outcome(early)["broken"][0] == _outcome(early)["wrongkey"][0] == "FAILED"
        assert early["key"]["released"] is True and early["key"]["kek_id"]
        # The failed packs' early buffers were freed; the loaded models hold theirs.
        loaded = {n for n, (state, _) in _outcome(early).items() if state == "READY"}
        assert {u.owner for u in early_pool.usage()} == loaded
        assert [u.bytes for u in early_pool.usage()] == [u.bytes for u in plain_pool.usage()]
        taken = {r.args[0] for r in caplog.records  # type: ignore[index]
                 if r.msg.startswith("model %s: payload taken from the early decryption")}
        assert taken == loaded
    finally:
        await plain_sup.stop()
        await early_sup.stop()
