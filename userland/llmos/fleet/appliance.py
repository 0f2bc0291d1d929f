"""An appliance seen from outside: its inference API over HTTP, with an API key.

Errors are sorted for the caller: ``Unavailable`` (the appliance cannot serve now:
refused connection, 5xx, not ready, a key it does not accept, a model it lacks; try
another appliance) and ``Rejected`` (4xx for this input: another appliance would refuse
it too, so it becomes the item's result, never a retry).
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

#: 4xx statuses that are about the appliance (key, model presence), not about the input.
_APPLIANCE_4XX = frozenset({401, 403, 404, 408, 429})
MAX_BUSY_WAIT_S = 5.0


def _seconds(retry_after: str) -> float:
    """A Retry-After in seconds, capped (an HTTP date, rare here, counts as 1 s)."""
    try:
        return max(0.0, min(float(retry_after), MAX_BUSY_WAIT_S))
    except ValueError:
        return 1.0


class ApplianceError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unavailable(ApplianceError):
    """This appliance cannot serve the request now; another may."""


class Busy(Unavailable):
    """503 with Retry-After: the appliance's queue is full; it asks to be called later."""

    def __init__(self, message: str, status: int, retry_after_s: float) -> None:
        super().__init__(message, status)
        self.retry_after_s = retry_after_s


class Rejected(ApplianceError):
    """The input is refused (4xx); every appliance would refuse it."""


@dataclass(frozen=True)
class Appliance:
    url: str  # http(s)://host:port of the inference API
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 300.0
    busy_retries: int = 3
    #: https: the certificates to trust (the appliance's own, or the CA that signed it);
    #: none: the system's. The name in the URL must be in the certificate.
    ca_file: Path | None = None

    @cached_property
    def _tls(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=None if self.ca_file is None
                                          else str(self.ca_file))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def request(self, method: str, path: str, body: Any = None,
                timeout_s: float | None = None) -> Any:
        """One call; a 503 with Retry-After (queue full) is waited out ``busy_retries``
        times before it counts as Unavailable."""
        for _ in range(self.busy_retries):
            try:
                return self._request_once(method, path, body, timeout_s)
            except Busy as exc:
                time.sleep(exc.retry_after_s)
        return self._request_once(method, path, body, timeout_s, busy_is_final=True)

    def _request_once(self, method: str, path: str, body: Any, timeout_s: float | None,
                      busy_is_final: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method,
                                     headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s,
                                        context=self._tls) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            message = f"{method} {self.url}{path}: HTTP {exc.code}: {detail}"
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            if exc.code == 503 and retry_after and not busy_is_final:
                raise Busy(message, 503, _seconds(retry_after)) from exc
            if exc.code >= 500 or exc.code in _APPLIANCE_4XX:
                raise Unavailable(message, exc.code) from exc
            raise Rejected(message, exc.code) from exc
        except (OSError, json.JSONDecodeError) as exc:  # URLError, timeouts are OSErrors
            raise Unavailable(f"{method} {self.url}{path}: {exc}") from exc

    def request_text(self, path: str, timeout_s: float = 10.0) -> str:
        """A GET whose answer is text (``/metrics``)."""
        req = urllib.request.Request(self.url.rstrip("/") + path, headers=self._headers())
        try:
            with urllib.request.urlopen(req, timeout=timeout_s, context=self._tls) as resp:
                return bytes(resp.read()).decode()
        except OSError as exc:
            raise Unavailable(f"GET {self.url}{path}: {exc}") from exc

    def ready(self) -> bool:
        try:
            doc = self.request("GET", "/v2/health/ready", timeout_s=5)
        except ApplianceError:
            return False
        return bool(isinstance(doc, dict) and doc.get("ready"))

    def wait_ready(self, timeout_s: float, poll_s: float = 0.5) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    def models(self) -> list[str]:
        """Names of the models this appliance serves now (ready ones)."""
        index = self.request("POST", "/v2/repository/index", {"ready": True})
        return sorted(str(m["name"]) for m in index if m.get("state") == "READY")

    def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                            "data": texts}]}
        doc = self.request("POST", f"/v2/models/{model}/infer", body)
        out = doc["outputs"][0]
        width = int(out["shape"][1])
        data = out["data"]
        return [data[i * width:(i + 1) * width] for i in range(len(texts))]

    def chat(self, model: str, messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
        body = {"model": model, "messages": messages, "max_tokens": max_tokens,
                "temperature": 0}
        doc = self.request("POST", "/v1/chat/completions", body)
        choice = doc["choices"][0]
        return {"text": choice["message"]["content"], "finish_reason": choice["finish_reason"]}
