"""A logged-in session on the appliance's admin page, as a browser would hold it: the
session cookie, and the CSRF token every state-changing request must send back.

The page is HTTPS with a self-signed certificate: the session is opened only after the
server presented the certificate whose fingerprint the console printed (``pin``, checked by
``llmos_vm.http`` before anything is sent); the session's own requests then go to the same
forwarded port."""

from __future__ import annotations

import http.cookiejar as http_cookies
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from llmos_vm import http
from llmos_vm.http import Reply

_TOKEN = re.compile(r'name="csrf[-_]token"[^>]*(?:content|value)="([^"]+)"')


class AdminSession:
    def __init__(self, base: str, password: str, pin: str) -> None:
        self.base = base.rstrip("/")
        first = http.request(f"{self.base}/login", pin=pin, timeout_s=60)
        assert first is not None and first.status == 200, "admin page: no pinned answer"
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # pinned above
        jar = http_cookies.CookieJar()
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPCookieProcessor(jar),
                                                      urllib.request.HTTPSHandler(context=context)]
        self._opener = urllib.request.build_opener(*handlers)
        page = self._send("GET", "/login")
        assert page.status == 200, f"admin /login: {page.status}"
        token = self._token(page)
        reply = self._send("POST", "/login", form={"password": password, "csrf_token": token})
        assert reply.status == 200, f"admin login: {reply.status} {reply.body[:300]!r}"
        self.csrf = self._token(self._send("GET", "/"))

    @staticmethod
    def _token(page: Reply) -> str:
        found = _TOKEN.search(page.body.decode(errors="replace"))
        assert found, "no CSRF token on the admin page"
        return found.group(1)

    def _send(self, method: str, path: str, *, form: dict[str, str] | None = None,
              payload: Any = None, headers: dict[str, str] | None = None,
              timeout_s: float = 60.0) -> Reply:
        data, head = None, dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            head["Content-Type"] = "application/x-www-form-urlencoded"
        elif payload is not None:
            data = json.dumps(payload).encode()
            head["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=head)
        try:
            with self._opener.open(req, timeout=timeout_s) as resp:
                return Reply(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read())

    def get(self, path: str) -> Reply:
        return self._send("GET", path)

    def post(self, path: str, payload: Any = None, *, csrf: bool = True) -> Reply:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self._send("POST", path, payload=payload if payload is not None else {},
                          headers=headers)
