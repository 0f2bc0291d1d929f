"""Which OS version answers: the booted image's IMAGE_VERSION in ``GET /v2`` (beside the
protocol's fields, which the stock tritonclient still reads) and in ``/health``; absent on
a host, whose os-release has none."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http as httpclient

from llmos.osupdate import system as os_system

from .conftest import Packs, Start, standard_config, wait_settled


def _triton_metadata(url: str) -> tuple[dict[str, Any], bool]:
    """The stock client's view (created and used in one thread: it runs on gevent)."""
    triton = httpclient.InferenceServerClient(url=url)
    try:
        return triton.get_server_metadata(), triton.is_server_live()
    finally:
        triton.close()


async def test_the_image_version_is_shown(start_app: Start, packs: Packs, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os_system, "image_version", lambda root=Path("/"): "2")
    client, _ = await start_app(standard_config(packs, tmp_path))
    await wait_settled(client)
    meta = await (await client.get("/v2")).json()
    assert meta["image_version"] == "2"
    assert meta["name"] == "llmos" and "model_repository" in meta["extensions"]
    assert (await (await client.get("/health")).json())["image_version"] == "2"
    seen, live = await asyncio.to_thread(_triton_metadata, f"127.0.0.1:{client.port}")
    assert seen["image_version"] == "2" and seen["name"] == "llmos" and live


async def test_a_host_has_none(start_app: Start, packs: Packs, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os_system, "image_version", lambda root=Path("/"): None)
    client, _ = await start_app(standard_config(packs, tmp_path))
    await wait_settled(client)
    assert "image_version" not in await (await client.get("/v2")).json()
    assert "image_version" not in await (await client.get("/health")).json()
