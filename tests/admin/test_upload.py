"""Uploading a sealed pack: checked before it is kept, stored still encrypted, loaded."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from llmos.app import LlmOs
from llmos.hw.memory import MemoryPool
from llmos.state import ModelState
from llmos.systemd import Notifier
from llmos.vault import uploads
from llmos.vault.kek import generate_kek

from . import models
from .conftest import AdminServer, Packs, Start, login, server_config, wait_settled


def _form(blob: bytes, name: str = "pack.sealed") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("pack", blob, filename=name, content_type="application/octet-stream")
    return form


def _stored(srv: AdminServer) -> list[str]:
    folder = srv.state.options.upload_dir
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


async def test_a_good_pack_is_stored_encrypted_and_loaded(start_admin: Start,
                                                         packs: Packs) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    blob = models.sealed_scaler("uploaded", packs.kek, version="3")
    resp = await srv.admin.post("/api/models", data=_form(blob),
                                headers={"X-CSRF-Token": token})
    assert resp.status == 200, await resp.text()
    doc = await resp.json()
    assert doc["name"] == "uploaded" and doc["state"] == "READY" and doc["version"] == "3"
    assert _stored(srv) == ["uploaded-3.sealed"]
    assert srv.state.options.upload_dir == srv.tmp / "state" / "packs"
    assert list(srv.state.options.packs_dir.iterdir()) == []  # read-only on the image
    stored = (srv.state.options.upload_dir / "uploaded-3.sealed").read_bytes()
    assert stored == blob  # kept exactly as sealed: no plaintext on disk
    assert models.scaler_onnx() not in stored
    assert srv.supervisor.registry.status("uploaded").state is ModelState.READY
    infer = await srv.api.post("/v2/models/uploaded/infer", json={"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    assert (await infer.json())["outputs"][0]["data"] == [2, 4, 6, 8]


async def test_a_truncated_pack_is_refused_and_not_kept(start_admin: Start,
                                                        packs: Packs) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    blob = models.sealed_scaler("cut", packs.kek)
    resp = await srv.admin.post("/api/models", data=_form(blob[:-100]),
                                headers={"X-CSRF-Token": token})
    assert resp.status == 400 and "promises" in (await resp.json())["error"]
    assert _stored(srv) == []


async def test_a_pack_for_another_fleet_key_is_refused(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    resp = await srv.admin.post("/api/models",
                                data=_form(models.sealed_scaler("alien", generate_kek())),
                                headers={"X-CSRF-Token": token})
    assert resp.status == 422
    doc = await resp.json()
    assert doc["type"] == "WrongKeyError" and "seal the pack again" in doc["hint"]
    assert _stored(srv) == []


async def test_garbage_is_refused(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    resp = await srv.admin.post("/api/models", data=_form(b"not a sealed pack" * 100),
                                headers={"X-CSRF-Token": token})
    assert resp.status == 422 and (await resp.json())["type"] == "PackFormatError"
    assert _stored(srv) == []


async def test_uploads_are_bounded(start_admin: Start, packs: Packs) -> None:
    srv: AdminServer = await start_admin(upload_max_bytes=200)
    token = await login(srv.admin)
    resp = await srv.admin.post("/api/models",
                                data=_form(models.sealed_scaler("big", packs.kek)),
                                headers={"X-CSRF-Token": token})
    assert resp.status == 413
    assert _stored(srv) == []


async def test_an_upload_larger_than_the_free_space_is_refused(
        start_admin: Start, packs: Packs, monkeypatch: pytest.MonkeyPatch) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    blob = models.sealed_scaler("roomy", packs.kek)
    folder = srv.state.options.upload_dir
    folder.mkdir(parents=True, exist_ok=True)
    # a partition of 1 GiB, all free; the reserve leaves the upload 100 bytes short
    free = 1 << 30
    monkeypatch.setattr("llmos.vault.uploads.shutil.disk_usage",
                        lambda _: SimpleNamespace(total=free, used=0, free=free))
    monkeypatch.setattr(uploads, "RESERVE_BYTES", free - len(blob) + 100)
    resp = await srv.admin.post("/api/models", data=_form(blob),
                                headers={"X-CSRF-Token": token})
    assert resp.status == 413
    assert "data partition" in (await resp.json())["error"]
    assert _stored(srv) == []
    monkeypatch.setattr(uploads, "RESERVE_BYTES", 0)  # room again: the same upload is kept
    resp = await srv.admin.post("/api/models", data=_form(blob),
                                headers={"X-CSRF-Token": token})
    assert resp.status == 200, await resp.text()
    assert _stored(srv) == ["roomy-1.sealed"]


async def test_an_upload_comes_back_after_a_restart(start_admin: Start, packs: Packs,
                                                     aiohttp_client: Any) -> None:
    """Upload v1 then v2 of a model; a leftover of an interrupted upload lies beside them.
    A new server on the same state folder (the restart: ``llmos serve`` merges the folder
    into its models) serves v2 and has removed the leftover."""
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    for version in ("1", "2"):
        resp = await srv.admin.post("/api/models", data=_form(
            models.sealed_scaler("kept", packs.kek, version)), headers={"X-CSRF-Token": token})
        assert resp.status == 200, await resp.text()
        if version == "1":
            assert (await srv.admin.post("/api/models/kept/unload",
                                         headers={"X-CSRF-Token": token})).status == 200
    folder = srv.state.options.upload_dir
    (folder / uploads.temporary_name("cut0ff")).write_bytes(b"the first half")
    assert _stored(srv) == [uploads.temporary_name("cut0ff"), "kept-2.sealed"]

    cfg = uploads.merge(server_config(packs, srv.tmp / "state", Path(srv.tmp / "packs")))
    assert _stored(srv) == ["kept-2.sealed"]
    pool = MemoryPool(pin=True)
    try:
        again = LlmOs(cfg, notifier=Notifier({}), memory=pool)
        api = await aiohttp_client(again.api_app())
        await wait_settled(again)
        assert again.registry.status("kept").state is ModelState.READY
        assert again.registry.manifest("kept").version == "2"
        infer = await api.post("/v2/models/kept/infer", json={"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
        assert (await infer.json())["outputs"][0]["data"] == [2, 4, 6, 8]
        await api.close()
    finally:
        pool.close()
