"""Uploading a sealed pack: checked before it is kept, stored still encrypted, loaded."""

from __future__ import annotations

import aiohttp

from llmos.state import ModelState
from llmos.vault.kek import generate_kek

from . import models
from .conftest import AdminServer, Packs, Start, login


def _form(blob: bytes, name: str = "pack.sealed") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("pack", blob, filename=name, content_type="application/octet-stream")
    return form


def _stored(srv: AdminServer) -> list[str]:
    return sorted(p.name for p in srv.state.options.packs_dir.iterdir())


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
    stored = (srv.state.options.packs_dir / "uploaded-3.sealed").read_bytes()
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


async def test_a_loaded_model_is_not_replaced_under_its_feet(start_admin: Start,
                                                             packs: Packs) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    resp = await srv.admin.post("/api/models",
                                data=_form(models.sealed_scaler("scaler", packs.kek, "9")),
                                headers={"X-CSRF-Token": token})
    assert resp.status == 400 and "unload it first" in (await resp.json())["hint"]
    assert _stored(srv) == []


async def test_uploads_are_bounded(start_admin: Start, packs: Packs) -> None:
    srv: AdminServer = await start_admin(upload_max_bytes=200)
    token = await login(srv.admin)
    resp = await srv.admin.post("/api/models",
                                data=_form(models.sealed_scaler("big", packs.kek)),
                                headers={"X-CSRF-Token": token})
    assert resp.status == 413
    assert _stored(srv) == []
