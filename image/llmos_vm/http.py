"""Tiny HTTP client for talking to the guest over the forwarded ports (stdlib only).

HTTPS (the admin page) is verified by pinning: the guest's certificate is self-signed, so
the caller gives the SHA-256 fingerprint the guest printed on its console, and a server
that presents another certificate is refused before anything is sent.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from llmos_vm.errors import VmError


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class CertificateMismatch(VmError):
    """The HTTPS server presented a certificate other than the pinned one."""


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as ``AB:CD:...`` (how llmos prints it)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def request(url: str, payload: Any = None, timeout_s: float = 10.0, *,
            pin: str | None = None) -> Reply | None:
    """GET (or POST ``payload`` as JSON); None when nothing answers (connection refused,
    reset, timeout: the guest is not up yet). HTTP errors are replies, not exceptions.
    An ``https://`` URL needs ``pin``, the certificate's SHA-256 fingerprint."""
    data = None if payload is None else json.dumps(payload).encode()
    if url.startswith("https://"):
        if pin is None:
            raise ValueError("HTTPS to the guest needs the certificate's fingerprint (pin)")
        return _pinned(url, data, timeout_s, pin)
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return Reply(resp.status, resp.read(), dict(resp.headers))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read(), dict(exc.headers))
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _pinned(url: str, data: bytes | None, timeout_s: float, pin: str) -> Reply | None:
    parts = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context()
    # No CA signs the guest's certificate: trust is the pinned fingerprint, checked below
    # before the request is sent.
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection(parts.hostname or "127.0.0.1", parts.port,
                                       timeout=timeout_s, context=ctx)
    try:
        conn.connect()
        assert isinstance(conn.sock, ssl.SSLSocket)
        der = conn.sock.getpeercert(binary_form=True)
        presented = fingerprint(der) if der else "none"
        if presented != pin.upper():
            raise CertificateMismatch(f"{url} presented certificate {presented}, not the "
                                      f"pinned {pin}", "is another server on that port?")
        path = parts.path or "/"
        conn.request("GET" if data is None else "POST", path + (f"?{parts.query}"
                     if parts.query else ""), body=data,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return Reply(resp.status, resp.read(), dict(resp.getheaders()))
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
