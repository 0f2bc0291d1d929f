"""OS updates on the admin console: the running and staged versions, and the two requests
(update from a source, reboot into the staged version) it may drop for the update agent.

The supervisor never writes a slot: it writes the request file (``osupdate.request_file``)
that ``llmos-update.path`` watches, and reads the agent's status file
(``osupdate.status_file``); see docs/os-updates.md. Like every admin route these need a
logged-in session and, for a POST, its CSRF token (``auth.guard``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web

from llmos.errors import BadRequestError, ConflictError
from llmos.osupdate import status as osstatus
from llmos.osupdate.request import Request, parse_request, submit
from llmos.osupdate.system import boot_assessment
from llmos.web.admin.api import json_response
from llmos.web.admin.state import ADMIN, AdminOptions


def _view(options: AdminOptions, assessment: str) -> dict[str, Any]:
    status = osstatus.read(options.os_status_file)
    return {"running": options.image_version, "assessment": assessment,
            "pending": options.os_request_file.exists(),
            "status": status.to_dict() if status is not None else None,
            "can_reboot": bool(status is not None and status.staged)}


async def show(request: web.Request) -> web.Response:
    options = request.app[ADMIN].options
    assessment = await asyncio.to_thread(boot_assessment)
    return json_response(_view(options, assessment))


async def _fields(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            doc = await request.json()
        except ValueError as exc:
            raise BadRequestError("the body is not JSON", "send {\"source\": URL}") from exc
        return doc if isinstance(doc, dict) else {}
    return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}


async def _submit(request: web.Request, wanted: Request) -> web.Response:
    options = request.app[ADMIN].options
    await asyncio.to_thread(submit, options.os_request_file, wanted)
    doc = _view(options, "unknown")
    doc["requested"] = {"action": wanted.action,
                        "source": wanted.source.path if wanted.source else None}
    return json_response(doc, 202)


async def update(request: web.Request) -> web.Response:
    fields = await _fields(request)
    wanted = parse_request({"action": "update", "source": fields.get("source")}, os.path.isdir)
    return await _submit(request, wanted)


async def reboot(request: web.Request) -> web.Response:
    status = osstatus.read(request.app[ADMIN].options.os_status_file)
    if status is None or not status.staged:
        raise ConflictError("no version is staged: there is nothing to reboot into",
                            "start an update first and wait until it is staged")
    return await _submit(request, Request("reboot"))


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/os-update", show)
    r.add_post("/api/os-update/update", update)
    r.add_post("/api/os-update/reboot", reboot)
