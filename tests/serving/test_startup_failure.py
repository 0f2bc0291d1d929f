"""A start-up that fails unexpectedly leaves the server up, saying why (issue 24, part 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos import config
from llmos.app import LlmOs
from llmos.state import Overall
from llmos.systemd import Notifier

from .conftest import Packs, standard_config


async def test_a_failed_start_up_is_reported_not_fatal(packs: Packs, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config.load(standard_config(packs, tmp_path, control=False), environ={})
    server = LlmOs(cfg, notifier=Notifier({}))

    async def broken() -> None:
        raise OSError("the packs folder is unreadable")

    monkeypatch.setattr(server.registry, "read_manifests", broken)
    await server.start_or_report()  # returns; nothing raised
    health = server.health()
    assert health.overall is Overall.UNAVAILABLE and health.settled and not health.ready
    assert health.reasons[0] == "start-up failed: OSError: the packs folder is unreadable"
    await server.stop()
