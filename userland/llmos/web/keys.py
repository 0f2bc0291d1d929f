"""Typed keys of the aiohttp applications (``web.AppKey``, never string keys)."""

from __future__ import annotations

from aiohttp import web

from llmos.dataplane import DataPlane

#: What every handler calls: the transport-neutral data plane (and, through it, the registry).
DATAPLANE = web.AppKey("dataplane", DataPlane)
#: Whether the API listener asks for API keys (the OpenAPI document says so then).
KEYS_REQUIRED = web.AppKey("keys_required", bool)
#: The booted image's IMAGE_VERSION (os-release), shown by /v2 and /health; "" on a host.
IMAGE_VERSION = web.AppKey("image_version", str)
