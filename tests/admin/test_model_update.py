"""Model updates through the admin upload: a new version loads beside the serving one,
takes over once warm, and the old one goes once nothing holds it; bad packs change nothing.

The model is the admin tests' real ONNX scaler (y = x * factor): version 1 doubles, the
updates triple, so every answer says which version computed it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from llmos.serving.loading import Loaded, ModelLoader
from llmos.state import ModelState, UpdateState

from . import models
from .conftest import AdminServer, Packs, Start, login

X = [1.0, 2.0, 3.0, 4.0]


def _form(blob: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("pack", blob, filename="pack.sealed", content_type="application/octet-stream")
    return form


async def _upload(srv: AdminServer, token: str, blob: bytes) -> aiohttp.ClientResponse:
    return await srv.admin.post("/api/models", data=_form(blob),
                                headers={"X-CSRF-Token": token})


async def _update_to_2(srv: AdminServer, token: str, packs: Packs) -> dict[str, Any]:
    """Version 2 of ``scaler`` (factor 3) uploaded and accepted: the upload's answer."""
    resp = await _upload(srv, token, models.sealed_scaler("scaler", packs.kek, "2", factor=3))
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def _infer(srv: AdminServer, path: str) -> tuple[int, Any]:
    resp = await srv.api.post(f"{path}/infer", json={"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}]})
    return resp.status, await resp.json()


async def _answer(srv: AdminServer, path: str) -> tuple[str, list[float]]:
    """(the version that answered, its output) of a request that must succeed."""
    status, doc = await _infer(srv, path)
    assert status == 200, doc
    return doc["model_version"], doc["outputs"][0]["data"]


async def _until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _update(srv: AdminServer) -> Any:
    return srv.supervisor.registry.status("scaler").update


def _owners(srv: AdminServer) -> set[str]:
    pool = srv.supervisor.memory
    assert pool is not None
    return {u.owner for u in pool.usage()}


def _stored(srv: AdminServer) -> list[str]:
    folder = srv.state.options.upload_dir
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


async def test_a_new_version_takes_over_and_the_old_one_is_unloaded(
        start_admin: Start, packs: Packs) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    assert await _answer(srv, "/v2/models/scaler") == ("1", [2, 4, 6, 8])
    doc = await _update_to_2(srv, token, packs)
    assert (doc["state"], doc["version"], doc["update"]["previous"]) == ("READY", "2", "1")
    assert doc["update"]["state"] in ("DRAINING", "DONE")
    assert await _answer(srv, "/v2/models/scaler") == ("2", [3, 6, 9, 12])
    await _until(lambda: _update(srv).state is UpdateState.DONE)
    assert _update(srv).reason == ""
    meta = await (await srv.api.get("/v2/models/scaler")).json()
    assert meta["versions"] == ["2"]
    gone = await srv.api.get("/v2/models/scaler/versions/1/ready")
    assert gone.status == 404
    assert _owners(srv) == {"scaler"}  # v1's memory freed, v2's under the model's name
    assert _stored(srv) == ["scaler-2.sealed"]
    health = await (await srv.api.get("/health")).json()
    assert health["models"]["scaler"]["update"]["state"] == "DONE"


async def test_both_versions_answer_while_the_old_one_holds_a_request(
        start_admin: Start, packs: Packs) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    registry = srv.supervisor.registry
    old = registry.served("scaler")
    with registry.leases.hold(old):  # a request still running on version 1
        await _update_to_2(srv, token, packs)
        assert _update(srv).state is UpdateState.DRAINING
        meta = await (await srv.api.get("/v2/models/scaler")).json()
        assert meta["versions"] == ["2", "1"]
        assert await _answer(srv, "/v2/models/scaler") == ("2", [3, 6, 9, 12])
        assert await _answer(srv, "/v2/models/scaler/versions/2") == ("2", [3, 6, 9, 12])
        assert await _answer(srv, "/v2/models/scaler/versions/1") == ("1", [2, 4, 6, 8])
        for version in ("1", "2"):
            ready = await srv.api.get(f"/v2/models/scaler/versions/{version}/ready")
            assert ready.status == 200, await ready.text()
        await asyncio.sleep(0.1)
        assert _update(srv).state is UpdateState.DRAINING  # held: not unloaded
        assert _owners(srv) == {"scaler@1", "scaler@2"}  # each version its own memory
    await _until(lambda: _update(srv).state is UpdateState.DONE)
    status, doc = await _infer(srv, "/v2/models/scaler/versions/1")
    assert status == 404 and "versions now: 2" in doc["hint"]
    assert _owners(srv) == {"scaler"}


async def test_the_version_already_serving_is_refused_and_not_kept(
        start_admin: Start, packs: Packs) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    resp = await _upload(srv, token, models.sealed_scaler("scaler", packs.kek, "1", factor=3))
    assert resp.status == 409
    assert "already serves version '1'" in (await resp.json())["error"]
    assert _stored(srv) == []
    update = _update(srv)
    assert update.state is UpdateState.FAILED and "already serves" in update.reason
    assert await _answer(srv, "/v2/models/scaler") == ("1", [2, 4, 6, 8])


async def test_a_pack_that_does_not_load_leaves_the_old_version_serving(
        start_admin: Start, packs: Packs) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    blob = models.sealed_scaler("scaler", packs.kek, "2", onnx_bytes=b"not an onnx model")
    resp = await _upload(srv, token, blob)
    assert resp.status == 422, await resp.text()
    st = srv.supervisor.registry.status("scaler")
    assert (st.state, st.version) == (ModelState.READY, "1")
    assert st.update is not None and st.update.state is UpdateState.FAILED
    assert st.update.version == "2" and "onnx" in st.update.reason.lower()
    assert await _answer(srv, "/v2/models/scaler") == ("1", [2, 4, 6, 8])
    assert _stored(srv) == []  # the failed pack is not kept
    assert _owners(srv) == {"scaler"}  # nothing of version 2 left in memory
    # the operator fixes the pack: the next update goes through
    await _update_to_2(srv, token, packs)
    assert await _answer(srv, "/v2/models/scaler") == ("2", [3, 6, 9, 12])


async def test_a_loading_version_is_not_ready_and_a_second_update_waits(
        start_admin: Start, packs: Packs, monkeypatch: pytest.MonkeyPatch) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    go = threading.Event()
    build = ModelLoader.build

    def slow_build(self: ModelLoader, *args: Any, **kwargs: Any) -> Loaded:
        assert go.wait(30)
        return build(self, *args, **kwargs)

    monkeypatch.setattr(ModelLoader, "build", slow_build)
    upload = asyncio.create_task(_upload(
        srv, token, models.sealed_scaler("scaler", packs.kek, "2", factor=3)))
    await _until(lambda: _update(srv) is not None
                 and _update(srv).state is UpdateState.LOADING)
    try:
        ready = await srv.api.get("/v2/models/scaler/versions/2/ready")
        assert ready.status == 400 and (await ready.json())["state"] == "LOADING"
        status, doc = await _infer(srv, "/v2/models/scaler/versions/2")
        assert status == 503 and "loading beside version '1'" in doc["error"]
        assert await _answer(srv, "/v2/models/scaler") == ("1", [2, 4, 6, 8])
        assert (await srv.api.get("/v2/models/scaler/ready")).status == 200
        second = await _upload(srv, token, models.sealed_scaler("scaler", packs.kek, "3"))
        assert second.status == 409
        assert "already being updated" in (await second.json())["error"]
    finally:
        go.set()
    resp = await upload
    assert resp.status == 200, await resp.text()
    assert await _answer(srv, "/v2/models/scaler") == ("2", [3, 6, 9, 12])
    assert _stored(srv) == ["scaler-2.sealed"]


async def test_a_busy_old_version_is_unloaded_after_the_drain_timeout(
        start_admin: Start, packs: Packs) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    registry = srv.supervisor.registry
    registry._updates._drain_s = 0.2  # the setting server.update_drain_s, shortened
    with registry.leases.hold(registry.served("scaler")):  # a request that never ends
        await _update_to_2(srv, token, packs)
        await _until(lambda: _update(srv).state is UpdateState.DONE)
    assert "still busy after 0.2 s" in _update(srv).reason
    assert srv.supervisor.registry.versions("scaler") == ("2",)
    assert _owners(srv) == {"scaler"}


async def test_stopping_unloads_a_draining_version_at_once(start_admin: Start,
                                                           packs: Packs) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    registry = srv.supervisor.registry
    with registry.leases.hold(registry.served("scaler")):
        await _update_to_2(srv, token, packs)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await registry.unload_all()
        assert loop.time() - started < 10  # not the 60 s drain timeout
    assert registry.versions("scaler") == ("2",)
    assert _owners(srv) == set()


async def test_unload_and_load_while_the_old_version_drains_keep_their_memory(
        start_admin: Start, packs: Packs) -> None:
    """The old version's memory and a fresh load's are never one owner's: freeing the old
    one after its drain leaves the reloaded model whole."""
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    registry = srv.supervisor.registry
    with registry.leases.hold(registry.served("scaler")):
        await _update_to_2(srv, token, packs)
        await registry.unload("scaler")
        await registry.load("scaler")  # version 2 again, while version 1 still drains
        assert _owners(srv) == {"scaler", "scaler@1"}
    await _until(lambda: _update(srv).state is UpdateState.DONE)
    assert _owners(srv) == {"scaler"}
    pool = srv.supervisor.memory
    assert pool is not None and sum(u.bytes for u in pool.usage()) > 0
    assert await _answer(srv, "/v2/models/scaler") == ("2", [3, 6, 9, 12])
