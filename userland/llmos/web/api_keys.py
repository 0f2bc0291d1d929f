"""The API listener's key check: ``Authorization: Bearer <key>`` on every route but the probes.

With an empty ``KeyStore`` the middleware lets everything through (keys are optional).
Otherwise a request without a valid key gets 401 with an OpenAI-style error body, on the
``/v1`` and ``/v2`` routes alike; the health probes stay open for load balancers. Accepted
requests are counted per key *name* and refusals per reason in the app's metrics registry.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter

from llmos import apikeys
from llmos.apikeys import KeyStore

log = logging.getLogger(__name__)

#: Reachable without a key: what load balancers and liveness probes call.
OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready",
                        "/v2/health/live", "/v2/health/ready"})
_SCHEME = "bearer "


class KeyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter("llmos_api_key_requests", "API requests accepted, by key name",
                                ("key",), registry=registry)
        self.rejected = Counter("llmos_api_key_rejections",
                                "API requests refused for want of a valid key, by reason",
                                ("reason",), registry=registry)


def presented_key(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header (scheme case-insensitive)."""
    if header is None or header[:len(_SCHEME)].lower() != _SCHEME:
        return None
    key = header[len(_SCHEME):].strip()
    return key or None


def unauthorized(message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": "invalid_api_key"}}
    return web.Response(status=401, body=json.dumps(body).encode(),
                        content_type="application/json",
                        headers={"WWW-Authenticate": 'Bearer realm="llmos"'})


def key_middleware(store: KeyStore, metrics: KeyMetrics | None) -> Middleware:
    @web.middleware
    async def check_key(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not store.enabled or request.path in OPEN_PATHS:
            return await handler(request)
        key = presented_key(request.headers.get("Authorization"))
        if key is None:
            if metrics is not None:
                metrics.rejected.labels("missing").inc()
            return unauthorized("This API needs a key: send 'Authorization: Bearer <key>'.")
        name = store.check(key)
        if name is None:
            if metrics is not None:
                metrics.rejected.labels("invalid").inc()
            return unauthorized("Incorrect API key provided.")
        if metrics is not None:
            metrics.accepted.labels(name).inc()
        return await handler(request)

    return check_key


_METRICS: dict[int, KeyMetrics] = {}


def metrics_for(registry: CollectorRegistry) -> KeyMetrics:
    """One set of counters per registry (an app may be built twice on one supervisor)."""
    if id(registry) not in _METRICS:
        _METRICS[id(registry)] = KeyMetrics(registry)
    return _METRICS[id(registry)]


def middleware_from_config(keys_file: Path | None, host: str, registry: CollectorRegistry,
                           environ: Mapping[str, str]) -> Middleware:
    """The key check for ``server.api_keys_file`` and the ``llmos-api-keys`` credential."""
    return middleware_for(apikeys.load(keys_file, environ), host, registry)


def middleware_for(store: KeyStore, host: str, registry: CollectorRegistry) -> Middleware:
    """The key check for a loaded store (warns when an open listener has no keys)."""
    if store.enabled:
        log.info("API keys required on the inference API (%d key(s): %s)", len(store.keys),
                 ", ".join(store.names()))
        return key_middleware(store, metrics_for(registry))
    if not ipaddress_is_loopback(host):
        log.warning("the inference API listens on %s without API keys: anyone who reaches it "
                    "may call the models (provision the %s credential or "
                    "server.api_keys_file)", host, apikeys.CREDENTIAL)
    return key_middleware(store, None)


def ipaddress_is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
