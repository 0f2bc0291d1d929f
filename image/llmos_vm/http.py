"""Tiny HTTP client for talking to the guest over the forwarded ports (stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, payload: Any = None, timeout_s: float = 10.0) -> Reply | None:
    """GET (or POST ``payload`` as JSON); None when nothing answers (connection refused,
    reset, timeout: the guest is not up yet). HTTP errors are replies, not exceptions."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return Reply(resp.status, resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
