"""Typed keys of the aiohttp applications (``web.AppKey``, never string keys)."""

from __future__ import annotations

from aiohttp import web

from llmos.supervisor import Supervisor

SUPERVISOR = web.AppKey("supervisor", Supervisor)
