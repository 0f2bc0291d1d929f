"""Every admin route refuses strangers, and every state-changing one refuses a request
without the session's CSRF token. Routes are enumerated from the app's router, so a route
added later is covered without touching this file."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from aiohttp import web

from llmos.admin.csrf import SAFE_METHODS
from llmos.state import ModelState
from llmos.web.admin.auth import COOKIE, PUBLIC

from .conftest import AdminServer, Start, TestClient, login

PARAMS = {"model": "scaler", "version": "1", "path": "admin.css"}
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def routes(app: web.Application) -> Iterator[tuple[str, str]]:
    """(method, canonical path) of every route, sub-applications included."""
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        yield route.method, resource.canonical


def concrete(path: str) -> str:
    return _PARAM.sub(lambda m: PARAMS[m.group(1)], path)


def refused_as_stranger(status: int, location: str) -> bool:
    return status == 401 or (status in (302, 303) and location.startswith("/login"))


async def test_the_router_has_pages_api_and_playground(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    found = set(routes(srv.admin.app))
    for expected in [("GET", "/"), ("GET", "/models"), ("GET", "/api/charts"),
                     ("POST", "/api/models/{model}/load"), ("POST", "/api/models"),
                     ("POST", "/api/playground/v2/models/{model}/infer")]:
        assert expected in found
    assert found >= PUBLIC, "PUBLIC names a route that does not exist"


async def _strangers_are_refused(srv: AdminServer) -> int:
    checked = 0
    for method, path in sorted(set(routes(srv.admin.app))):
        if (method, path) in PUBLIC or method == "*":
            continue
        for accept in ("text/html", "application/json"):
            resp = await srv.admin.request(method, concrete(path), allow_redirects=False,
                                           headers={"Accept": accept})
            assert refused_as_stranger(resp.status, resp.headers.get("Location", "")), \
                f"{method} {path} answered {resp.status} without a login"
            checked += 1
    return checked


async def test_every_route_refuses_an_unauthenticated_request(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    assert await _strangers_are_refused(srv) >= 40  # no cookie at all
    assert (await srv.admin.get("/login")).status == 200  # an anonymous session now
    assert len(srv.state.sessions) == 1
    assert await _strangers_are_refused(srv) >= 40
    # and the refusals did not run the handlers: the model is still loaded
    assert srv.supervisor.registry.status("scaler").state is ModelState.READY


async def test_a_stale_or_forged_cookie_is_no_login(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    srv.admin.session.cookie_jar.update_cookies({COOKIE: "forged-session-id"})
    resp = await srv.admin.get("/api/models")
    assert resp.status == 401


async def _state_changing_routes(client: TestClient) -> list[tuple[str, str]]:
    return sorted((m, p) for m, p in set(routes(client.app))
                  if m not in SAFE_METHODS and m != "*")


async def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(
        start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    changing = await _state_changing_routes(srv.admin)
    assert len(changing) >= 6
    for method, path in changing:
        for headers in ({}, {"X-CSRF-Token": "not-the-token"},
                        {"X-CSRF-Token": token[:-2] + "xx"}):
            resp = await srv.admin.request(method, concrete(path), headers=headers,
                                           data={"csrf_token": "also-wrong"},
                                           allow_redirects=False)
            if path == "/login":  # a stale login form: back to a fresh one
                assert resp.status == 303 and "expired" in resp.headers["Location"]
            else:
                assert resp.status == 403, f"{method} {path} answered {resp.status}"
                assert (await resp.json())["type"] == "CsrfRejected"
    # nothing happened: still logged in, the model still loaded
    assert srv.supervisor.registry.status("scaler").state is ModelState.READY
    assert (await srv.admin.get("/api/models")).status == 200


async def test_the_right_token_lets_actions_through(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    resp = await srv.admin.post("/api/models/scaler/unload", headers={"X-CSRF-Token": token})
    assert resp.status == 200 and (await resp.json())["state"] == "UNLOADED"
    assert srv.supervisor.registry.status("scaler").state is ModelState.UNLOADED
    resp = await srv.admin.post("/api/models/scaler/load", headers={"X-CSRF-Token": token})
    assert resp.status == 200 and (await resp.json())["state"] == "READY"


async def test_login_sets_a_strict_http_only_session_cookie_and_rotates_it(
        start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    form = await srv.admin.get("/login")
    anon_cookie = form.cookies[COOKIE]
    assert anon_cookie["httponly"] and anon_cookie["samesite"] == "Strict"
    assert anon_cookie["path"] == "/" and not anon_cookie["secure"]  # plain HTTP here
    from .conftest import form_token

    resp = await srv.admin.post("/login", data={"password": "admin-test-password",
                                                "csrf_token": form_token(await form.text())},
                                allow_redirects=False)
    assert resp.status == 303
    new_cookie = resp.cookies[COOKIE]
    assert new_cookie.value != anon_cookie.value
    assert new_cookie["httponly"] and new_cookie["samesite"] == "Strict"
    assert len(srv.state.sessions) == 1  # the anonymous one was replaced


async def test_logout_ends_the_session(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    token = await login(srv.admin)
    cookie = srv.admin.session.cookie_jar.filter_cookies(srv.admin.make_url("/"))[COOKIE].value
    resp = await srv.admin.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert (await srv.admin.get("/api/models")).status == 401
    srv.admin.session.cookie_jar.update_cookies({COOKIE: cookie})  # replaying the old id
    assert (await srv.admin.get("/api/models")).status == 401


async def test_wrong_password_is_refused(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    form = await srv.admin.get("/login")
    from .conftest import form_token

    resp = await srv.admin.post("/login", data={"password": "not it",
                                                "csrf_token": form_token(await form.text())},
                                allow_redirects=False)
    assert resp.status == 401 and "Wrong password" in await resp.text()
    assert (await srv.admin.get("/api/models")).status == 401


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
async def test_login_never_redirects_off_site(start_admin: Start, target: str) -> None:
    srv: AdminServer = await start_admin()
    form = await srv.admin.get("/login")
    from .conftest import PASSWORD, form_token

    resp = await srv.admin.post("/login", data={"password": PASSWORD, "next": target,
                                                "csrf_token": form_token(await form.text())},
                                allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"


async def test_pages_redirect_strangers_to_login_and_back(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    resp = await srv.admin.get("/charts", headers={"Accept": "text/html"},
                               allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/charts"


async def test_security_headers_on_pages_and_refusals(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    for resp in (await srv.admin.get("/login"), await srv.admin.get("/api/models")):
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_static_assets_are_public_but_confined(start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    css = await srv.admin.get("/static/admin.css")
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    js = await srv.admin.get("/static/vendor/uPlot.iife.min.js")
    assert js.status == 200 and "uPlot" in await js.text()
    for bad in ("/static/vendor/vendor-uplot.sh", "/static/../admin.py",
                "/static/%2e%2e/admin.py", "/static/.hidden.js"):
        resp = await srv.admin.get(bad)
        assert resp.status in (401, 404), bad
