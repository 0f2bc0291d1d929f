"""OS updates on the admin console: the requests it drops for the update agent (validated,
atomic, one at a time), the agent's status it shows, and who may do any of it."""

from __future__ import annotations

import json
from pathlib import Path

from llmos.osupdate import status as st

from .conftest import AdminServer, Start, login

URL = "http://10.0.2.2:8080/updates"


async def started(start_admin: Start, tmp_path: Path) -> AdminServer:
    srv: AdminServer = await start_admin(
        os_request_file=tmp_path / "run" / "os-update" / "request",
        os_status_file=tmp_path / "run-update" / "status.json", image_version="1")
    return srv


def request_file(srv: AdminServer) -> Path:
    path: Path = srv.state.options.os_request_file
    return path


async def test_strangers_and_forged_posts_are_refused(start_admin: Start,
                                                      tmp_path: Path) -> None:
    srv = await started(start_admin, tmp_path)
    for method, path in (("GET", "/api/os-update"), ("POST", "/api/os-update/update"),
                         ("POST", "/api/os-update/reboot")):
        resp = await srv.admin.request(method, path, json={"source": URL})
        assert resp.status == 401, path
    token = await login(srv.admin)
    assert token
    for path in ("/api/os-update/update", "/api/os-update/reboot"):
        resp = await srv.admin.post(path, json={"source": URL})  # no X-CSRF-Token
        assert resp.status == 403 and (await resp.json())["type"] == "CsrfRejected"
    assert not request_file(srv).exists()


async def test_an_update_request_is_written_once(start_admin: Start, tmp_path: Path) -> None:
    srv = await started(start_admin, tmp_path)
    token = await login(srv.admin)
    headers = {"X-CSRF-Token": token}
    resp = await srv.admin.post("/api/os-update/update", json={"source": URL}, headers=headers)
    assert resp.status == 202, await resp.text()
    doc = await resp.json()
    assert doc["requested"] == {"action": "update", "source": URL + "/"}
    assert doc["pending"] is True and doc["running"] == "1"
    assert json.loads(request_file(srv).read_text()) == {"action": "update",
                                                         "source": URL + "/"}
    assert request_file(srv).parent.stat().st_mode & 0o777 == 0o700
    again = await srv.admin.post("/api/os-update/update", json={"source": "https://other/"},
                                 headers=headers)
    assert again.status == 409
    assert json.loads(request_file(srv).read_text())["source"] == URL + "/"


async def test_a_form_post_works_too(start_admin: Start, tmp_path: Path) -> None:
    srv = await started(start_admin, tmp_path)
    token = await login(srv.admin)
    resp = await srv.admin.post("/api/os-update/update",
                                data={"csrf_token": token, "source": str(tmp_path)})
    assert resp.status == 202
    assert json.loads(request_file(srv).read_text())["source"] == str(tmp_path)


async def test_a_bad_source_is_refused_naming_the_field(start_admin: Start,
                                                        tmp_path: Path) -> None:
    srv = await started(start_admin, tmp_path)
    token = await login(srv.admin)
    for source in ("http://user:pw@host/", "ftp://host/", "relative", None, "/no/such/dir"):
        resp = await srv.admin.post("/api/os-update/update", json={"source": source},
                                    headers={"X-CSRF-Token": token})
        assert resp.status == 400, source
        doc = await resp.json()
        assert doc["param"] == "source" and doc["hint"]
    assert not request_file(srv).exists()


async def test_reboot_only_into_a_staged_version(start_admin: Start, tmp_path: Path) -> None:
    srv = await started(start_admin, tmp_path)
    token = await login(srv.admin)
    headers = {"X-CSRF-Token": token}
    nothing = await srv.admin.post("/api/os-update/reboot", headers=headers)
    assert nothing.status == 409 and not request_file(srv).exists()
    shown = await (await srv.admin.get("/api/os-update")).json()
    assert shown["status"] is None and shown["can_reboot"] is False
    assert shown["running"] == "1"
    assert shown["assessment"] in ("unknown", "good", "bad", "indeterminate", "clean")
    st.write(srv.state.options.os_status_file,
             st.Status("staged", "1", "2", source=URL + "/", started_at=1.0, finished_at=2.0))
    shown = await (await srv.admin.get("/api/os-update")).json()
    assert (shown["status"]["state"], shown["status"]["staged"], shown["can_reboot"]) == \
        ("staged", "2", True)
    resp = await srv.admin.post("/api/os-update/reboot", headers=headers)
    assert resp.status == 202
    assert json.loads(request_file(srv).read_text()) == {"action": "reboot"}


async def test_the_page_and_the_overview(start_admin: Start, tmp_path: Path) -> None:
    srv = await started(start_admin, tmp_path)
    await login(srv.admin)
    page = await srv.admin.get("/update", headers={"Accept": "text/html"})
    assert page.status == 200 and 'data-page="update"' in await page.text()
    overview = await (await srv.admin.get("/api/overview")).json()
    assert overview["image_version"] == "1"
