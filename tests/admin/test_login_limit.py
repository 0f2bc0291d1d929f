"""Login attempts are rate-limited per client address (429 + Retry-After), and a
password changed on disk takes effect at once."""

from __future__ import annotations

from llmos.admin.password_file import set_password
from llmos.admin.ratelimit import LimitPolicy

from .conftest import PASSWORD, AdminServer, Start, form_token, login


async def _attempt(srv: AdminServer, password: str) -> tuple[int, dict[str, str], str]:
    form = await srv.admin.get("/login")
    resp = await srv.admin.post("/login", data={"password": password,
                                                "csrf_token": form_token(await form.text())},
                                allow_redirects=False)
    return resp.status, dict(resp.headers), await resp.text()


async def test_repeated_failures_are_locked_out_with_retry_after(start_admin: Start) -> None:
    srv: AdminServer = await start_admin(limits=LimitPolicy(free_attempts=3, base_s=30.0))
    for _ in range(3):
        status, _, _ = await _attempt(srv, "guess")
        assert status == 401
    status, _, _ = await _attempt(srv, "guess")  # the 4th failure earns a 30 s lockout
    assert status == 401
    status, headers, text = await _attempt(srv, PASSWORD)  # even the right one, now
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 30
    assert "Too many failed attempts" in text
    assert (await srv.admin.get("/api/models")).status == 401


async def test_lockout_ends_and_success_clears_the_count(start_admin: Start) -> None:
    srv: AdminServer = await start_admin(limits=LimitPolicy(free_attempts=1, base_s=30.0))
    clock = [1000.0]
    srv.state.clock = lambda: clock[0]
    assert (await _attempt(srv, "guess"))[0] == 401
    assert (await _attempt(srv, "guess"))[0] == 401  # locked out for 30 s from here
    assert (await _attempt(srv, PASSWORD))[0] == 429
    clock[0] += 31
    assert (await _attempt(srv, PASSWORD))[0] == 303
    assert len(srv.state.limiter) == 0


async def test_a_password_set_while_running_applies_and_ends_sessions(
        start_admin: Start) -> None:
    srv: AdminServer = await start_admin()
    await login(srv.admin)
    set_password(srv.state.options.password_file, "the new password")
    assert (await srv.admin.get("/api/models")).status == 401  # the change ended it
    assert (await _attempt(srv, PASSWORD))[0] == 401
    assert (await _attempt(srv, "the new password"))[0] == 303


async def test_without_a_password_nobody_logs_in(start_admin: Start) -> None:
    srv: AdminServer = await start_admin(password=None)
    form = await srv.admin.get("/login")
    assert "No admin password is set" in await form.text()
    status, _, text = await _attempt(srv, "")
    assert status == 401 and "No admin password is set" in text
