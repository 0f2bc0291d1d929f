"""The health gate's HTTP client (urllib: light to import, nothing to install).

JSON in, JSON out; an HTTP error status is an answer like any other, a refused or reset
connection or a timeout is ``Answer(0, None, why)``. Over TLS the loopback listener's
certificate (self-signed on the appliance) is not verified: the gate only ever talks to
127.0.0.1.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from llmos.osupdate.gate import Answer


class JsonClient:
    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.context = ssl._create_unverified_context() if base_url.startswith("https") \
            else None

    def get(self, path: str, timeout_s: float) -> Answer:
        return self._call(urllib.request.Request(self.base_url + path, headers=self.headers),
                          timeout_s)

    def post(self, path: str, doc: Mapping[str, Any], timeout_s: float) -> Answer:
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(doc).encode(), method="POST",
            headers={**self.headers, "Content-Type": "application/json"})
        return self._call(request, timeout_s)

    def _call(self, request: urllib.request.Request, timeout_s: float) -> Answer:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s,
                                        context=self.context) as response:
                return Answer(response.status, _json(response.read()))
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, _json(exc.read()))
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            return Answer(0, None, str(reason))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
