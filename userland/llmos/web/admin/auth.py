"""Who may use the admin console: one middleware guards every route, plus login/logout.

The ``guard`` middleware runs before every handler:

- a route not in ``PUBLIC`` needs an authenticated session, else it answers 401 (JSON
  endpoints, non-GET requests) or redirects to /login (pages);
- a request that may change state (not GET/HEAD/OPTIONS) needs the session's CSRF token in
  the ``X-CSRF-Token`` header or the ``csrf_token`` field of a urlencoded form, else 403 -
  the login form too (its token belongs to the anonymous session the form was served in).

So a route added later is protected without anyone remembering to protect it; the tests
enumerate ``app.router`` to keep it that way. Logins are rate-limited per client address.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from llmos.admin import csrf
from llmos.admin.password import PasswordHash, verify_password
from llmos.admin.password_file import read_hash
from llmos.admin.sessions import Session
from llmos.serving.codec import dumps
from llmos.web.admin import pages as admin_pages
from llmos.web.admin.state import ADMIN, AdminState

log = logging.getLogger(__name__)

COOKIE = "llmos_admin"
SESSION = web.RequestKey("admin_session", Session)

#: Routes anyone may reach: the login form and the static assets (code, no data).
PUBLIC: frozenset[tuple[str, str]] = frozenset({
    ("GET", "/login"), ("HEAD", "/login"), ("POST", "/login"),
    ("GET", "/static/{path}"), ("HEAD", "/static/{path}"),
})

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; "
                                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                "connect-src 'self'; frame-ancestors 'none'; "
                                "form-action 'self'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_key(request: web.Request) -> tuple[str, str]:
    """(method, canonical path) of the route this request matched ("" when none did)."""
    resource = request.match_info.route.resource
    return request.method, resource.canonical if resource is not None else ""


def _json(status: int, message: str, hint: str, kind: str,
          headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=dumps({"error": message, "hint": hint,
                                                   "type": kind}),
                        content_type="application/json", headers=headers)


def _wants_page(request: web.Request) -> bool:
    return (request.method in ("GET", "HEAD") and not request.path.startswith("/api/")
            and "text/html" in request.headers.get("Accept", ""))


def _unauthenticated(request: web.Request) -> web.StreamResponse:
    if _wants_page(request):
        target = "/login" if request.path == "/" else f"/login?next={quote(request.path_qs)}"
        raise web.HTTPSeeOther(target)
    return _json(401, "not logged in (or the session expired)", "log in at /login",
                 "Unauthenticated")


async def _supplied_token(request: web.Request) -> str | None:
    token = request.headers.get(csrf.HEADER)
    if token:
        return token
    if request.content_type == "application/x-www-form-urlencoded":
        value = (await request.post()).get(csrf.FORM_FIELD)
        return value if isinstance(value, str) else None
    return None  # multipart bodies are not read here: uploads send the header


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[ADMIN]
    current_hash(state)  # a password changed on disk ends the sessions before we look
    session = state.sessions.get(request.cookies.get(COOKIE), state.clock())
    if session is not None:
        request[SESSION] = session
    if route_key(request) not in PUBLIC and (session is None or not session.authenticated):
        return _unauthenticated(request)
    if csrf.changes_state(request.method):
        supplied = await _supplied_token(request)
        if session is None or not csrf.token_matches(session.csrf, supplied):
            log.warning("admin: %s %s from %s refused: missing or wrong CSRF token",
                        request.method, request.path, request.remote)
            if request.path == "/login":
                raise web.HTTPSeeOther("/login?expired=1")
            return _json(403, "missing or invalid CSRF token",
                         "reload the page and try again", "CsrfRejected")
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


# ------------------------------------------------------------------------- the password

def current_hash(state: AdminState) -> PasswordHash | None:
    """The stored hash, re-read when the file changed (``llmos admin set-password`` while
    running: one stat per request); a changed password ends every logged-in session."""
    path: Path = state.options.password_file
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        stamp = None
    slot = state.password
    if stamp is not None and stamp != slot.stamp:
        fresh = read_hash(path)
        if slot.hash is not None and fresh != slot.hash:
            ended = state.sessions.drop_authenticated()
            log.warning("admin password changed on disk; %d session(s) ended", ended)
        slot.hash, slot.stamp = fresh, stamp
    return slot.hash


# ------------------------------------------------------------------------- cookies

def _set_cookie(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    response.set_cookie(COOKIE, session.id, path="/", httponly=True, samesite="Strict",
                        secure=request.secure)


def _safe_next(raw: str | None) -> str:
    """Only a local path: no scheme, no host, no '//' (open-redirect proof)."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    return raw


# ------------------------------------------------------------------------- handlers

async def login_form(request: web.Request) -> web.StreamResponse:
    state = request.app[ADMIN]
    session = request.get(SESSION)
    next_path = _safe_next(request.query.get("next"))
    if session is not None and session.authenticated:
        raise web.HTTPSeeOther(next_path)
    if session is None:
        session = state.sessions.create(state.clock(), authenticated=False)
    notice = ""
    if "expired" in request.query:
        notice = "The login form expired; please try again."
    if current_hash(state) is None:
        notice = ("No admin password is set on this machine. Set one with "
                  "'llmos admin set-password' (or the llmos-admin-password credential).")
    response = admin_pages.html(admin_pages.login(session.csrf, next_path, notice=notice))
    _set_cookie(request, response, session)
    return response


async def _check(state: AdminState, stored: PasswordHash, password: str) -> bool:
    async with state.hashing:
        return await asyncio.get_running_loop().run_in_executor(
            None, verify_password, stored, password)


async def login(request: web.Request) -> web.StreamResponse:
    state = request.app[ADMIN]
    session = request[SESSION]  # the guard made sure there is one (the CSRF token's)
    form = await request.post()
    password = form.get("password")
    next_path = _safe_next(str(form.get("next") or "/"))
    client = request.remote or "unknown"
    now = state.clock()
    wait = state.limiter.retry_after(client, now)
    if wait is not None:
        log.warning("admin: login from %s refused: rate limited for %d s", client, wait)
        return admin_pages.html(
            admin_pages.login(session.csrf, next_path,
                              f"Too many failed attempts. Try again in {wait} s."),
            status=429, headers={"Retry-After": str(wait)})
    stored = current_hash(state)
    ok = (stored is not None and isinstance(password, str)
          and await _check(state, stored, password))
    if not ok:
        lockout = state.limiter.failure(client, state.clock())
        log.warning("admin: failed login from %s%s", client,
                    f"; locked out for {lockout} s" if lockout else "")
        error = ("No admin password is set on this machine." if stored is None
                 else "Wrong password.")
        return admin_pages.html(admin_pages.login(session.csrf, next_path, error),
                                status=401)
    state.limiter.success(client)
    fresh = state.sessions.login(session.id, state.clock())
    log.info("admin: login from %s", client)
    response = web.HTTPSeeOther(next_path)
    _set_cookie(request, response, fresh)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    state = request.app[ADMIN]
    state.sessions.drop(request[SESSION].id)
    log.info("admin: logout from %s", request.remote)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
