"""The admin console's HTML: the login page and one shell per page (server-rendered).

Each page is the same shell (navigation, header, an empty main area) with the page's
name in ``data-page``; ``static/admin.js`` fills it from the JSON endpoints under /api.
The session's CSRF token travels in a ``<meta>`` tag for the script to send back.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from aiohttp import web

from llmos import __version__

STATIC = "/static"


@dataclass(frozen=True)
class Page:
    slug: str
    path: str
    title: str
    blurb: str


PAGES: tuple[Page, ...] = (
    Page("overview", "/", "Overview", "health, keys, TPM and boot"),
    Page("accelerators", "/accelerators", "Accelerators", "claimed devices and hot-plug"),
    Page("memory", "/memory", "Memory", "hugepages, pinned weights"),
    Page("models", "/models", "Models", "load, unload, upload"),
    Page("charts", "/charts", "Live charts", "throughput, latency, queues"),
    Page("logs", "/logs", "Logs", "the supervisor's recent lines"),
    Page("playground", "/playground", "Playground", "chat and embed"),
    Page("update", "/update", "OS update", "version, update, reboot"),
)

_LOGO = ('<svg class="logo" viewBox="0 0 32 32" aria-hidden="true"><rect x="3" y="3" '
         'width="26" height="26" rx="7"/><path d="M10 21V11m6 10V14m6 7v-4"/></svg>')


def _head(title: str, csrf: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="csrf-token" content="{escape(csrf)}">'
            f'<title>{escape(title)} · LLM OS admin</title>'
            f'<link rel="icon" href="{STATIC}/favicon.svg" type="image/svg+xml">'
            f'<link rel="stylesheet" href="{STATIC}/vendor/uPlot.min.css">'
            f'<link rel="stylesheet" href="{STATIC}/admin.css"></head>')


def shell(page: Page, csrf: str) -> str:
    nav = "".join(
        f'<a href="{p.path}" class="nav-item{" active" if p is page else ""}" '
        f'data-nav="{p.slug}"><span class="nav-title">{escape(p.title)}</span>'
        f'<span class="nav-blurb">{escape(p.blurb)}</span></a>' for p in PAGES)
    return (
        _head(page.title, csrf)
        + f'<body data-page="{page.slug}"><div class="layout">'
        f'<aside class="sidebar"><div class="brand">{_LOGO}<div><div class="brand-name">'
        f'LLM OS</div><div class="brand-sub">admin console · v{escape(__version__)}</div>'
        f'</div></div><nav>{nav}</nav>'
        f'<form method="post" action="/logout" class="logout">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        f'<button type="submit" class="btn btn-ghost" id="logout">Log out</button></form>'
        f'</aside><main><header class="page-header"><h1>{escape(page.title)}</h1>'
        f'<div class="status-pill" id="health-pill">…</div></header>'
        f'<div id="content" class="content" aria-live="polite"></div></main></div>'
        f'<script src="{STATIC}/vendor/uPlot.iife.min.js"></script>'
        f'<script src="{STATIC}/admin.js"></script></body></html>')


def login(csrf: str, next_path: str, error: str = "", notice: str = "") -> str:
    message = f'<p class="form-error" role="alert">{escape(error)}</p>' if error else ""
    if notice:
        message += f'<p class="form-notice">{escape(notice)}</p>'
    return (
        _head("Log in", csrf)
        + f'<body class="login-body"><form method="post" action="/login" class="login-card">'
        f'<div class="brand">{_LOGO}<div><div class="brand-name">LLM OS</div>'
        f'<div class="brand-sub">admin console</div></div></div>{message}'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        f'<label for="password">Admin password</label>'
        f'<input type="password" id="password" name="password" autocomplete="current-password"'
        f' required autofocus>'
        f'<button type="submit" class="btn btn-primary" id="login">Log in</button>'
        f'<p class="login-foot">This console listens on its own address; the inference API '
        f'does not serve it.</p></form></body></html>')


def html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(text=body, status=status, content_type="text/html",
                            headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response
