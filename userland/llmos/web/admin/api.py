"""The admin console's read-only JSON endpoints (the pages' data), under /api.

Handlers only gather and shape; what they read comes from the data plane (health, key,
models), the device controller and memory pool (when the server runs them), the
chart ring, and the system readers in ``llmos.admin.system``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from llmos import __version__
from llmos.admin import system as admin_system
from llmos.errors import LlmosError
from llmos.hw.model import Accelerator, DeviceNode
from llmos.hw.resources import sample
from llmos.hw.usage import system_uptime_s
from llmos.serving.codec import dumps
from llmos.state import ModelState
from llmos.web.admin.playground import mounted
from llmos.web.admin.state import ADMIN
from llmos.web.keys import DATAPLANE


def json_response(doc: Any, status: int = 200) -> web.Response:
    response = web.Response(status=status, body=dumps(doc), content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


async def overview(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    health = request.app[DATAPLANE].health()
    tpm, boot = await asyncio.gather(
        asyncio.to_thread(admin_system.read_tpm),
        admin_system.read_journal(state.options.boot_events))
    models = health.models
    return json_response({
        "version": __version__,
        "image_version": state.options.image_version,
        "uptime_s": time.time() - state.started,
        "system_uptime_s": system_uptime_s(),
        "health": health.to_dict(),
        "summary": health.summary(),
        "models_ready": sum(1 for m in models if m.state is ModelState.READY),
        "models_total": len(models),
        "tpm": tpm.to_dict(),
        "boot": boot.to_dict(),
        "tls": None if state.options.tls is None else state.options.tls.to_dict(),
    })


async def health(request: web.Request) -> web.Response:
    h = request.app[DATAPLANE].health()
    return json_response({"status": h.overall.value, "ready": h.ready, "summary": h.summary()})


def _node(n: DeviceNode) -> dict[str, str]:
    return {"path": str(n.path), "kind": n.kind.value, "origin": n.origin.value}


def _accelerator(a: Accelerator, claimed: bool) -> dict[str, Any]:
    return {
        "address": a.address, "vendor": a.vendor, "model": a.model, "driver": a.driver,
        "numa_node": a.numa_node, "device": a.cuda_device, "claimed": claimed,
        "memory_total_bytes": a.memory_total_bytes, "memory_used_bytes": a.memory_used_bytes,
        "nodes": [_node(n) for n in a.nodes],
    }


async def accelerators(request: web.Request) -> web.Response:
    devices = request.app[ADMIN].devices
    if devices is None:
        return json_response({"available": False,
                              "reason": "the device controller is not running in this server",
                              "accelerators": [], "history": [], "shared_nodes": []})
    claims = {c.address: c for c in devices.claims()}
    inventory = devices.inventory
    return json_response({
        "available": True, "reason": "",
        "accelerators": [_accelerator(a, a.address in claims) for a in inventory.accelerators],
        "shared_nodes": [_node(n) for n in inventory.shared_nodes],
        "claims": [{"address": c.address, "persistence": c.persistence, "dry_run": c.dry_run,
                    "nodes": [{"path": str(n.path), "uid": n.uid, "gid": n.gid,
                               "mode": f"{n.mode:04o}"} for n in c.nodes]}
                   for c in claims.values()],
        "history": [{"t": e.at, "action": e.action, "device": e.device, "detail": e.detail}
                    for e in reversed(devices.history())],
    })


async def memory(request: web.Request) -> web.Response:
    state, registry = request.app[ADMIN], request.app[DATAPLANE].registry
    inventory = state.devices.inventory if state.devices is not None else None
    snap = await asyncio.to_thread(sample, None, inventory,
                                   accelerators_used=state.accelerators_used())
    usage = {u.owner: u for u in (state.memory.usage() if state.memory is not None else ())}
    models = []
    for st in registry.statuses():
        u = usage.get(st.name)
        models.append({
            "name": st.name, "state": st.state.value,
            "plain_bytes": st.size_plain if st.state is ModelState.READY else 0,
            "mapped_bytes": u.bytes if u else None,
            "hugepage_bytes": u.hugepage_bytes if u else None,
            "locked_bytes": u.locked_bytes if u else None,
        })
    fallbacks = state.memory.fallbacks() if state.memory is not None else ()
    return json_response({
        "pool": state.memory is not None,
        "ram_total_bytes": snap.ram_total_bytes,
        "ram_available_bytes": snap.ram_available_bytes,
        "process_rss_bytes": snap.process_rss_bytes,
        "process_locked_bytes": snap.process_locked_bytes,
        "cpu_percent": snap.cpu_percent, "cpu_count": snap.cpu_count,
        "hugepage_bytes": snap.hugepage_bytes,
        "hugepages_total": snap.hugepages_total, "hugepages_free": snap.hugepages_free,
        "hugepages_used": snap.hugepages_used,
        "models": models,
        "accelerators": [{"device": a.device, "model": a.model, "total_bytes": a.total_bytes,
                          "used_bytes": a.used_bytes} for a in snap.accelerators],
        "fallbacks": [{"what": f.what, "reason": f.reason, "fix": f.fix, "count": f.count}
                      for f in fallbacks],
    })


async def models(request: web.Request) -> web.Response:
    registry = request.app[DATAPLANE].registry
    rows = []
    for st in registry.statuses():
        row = st.to_dict()
        row["compression_ratio"] = (st.size_plain / st.size_packed) if st.size_packed else None
        row["pack"] = str(registry.model_config(st.name).pack)
        try:
            manifest = registry.manifest(st.name)
        except LlmosError:
            row["quantization"] = row["runtime"] = None
        else:
            row["quantization"], row["runtime"] = manifest.quantization, manifest.runtime
        rows.append(row)
    options = request.app[ADMIN].options
    return json_response({"models": rows, "packs_dir": str(options.packs_dir),
                          "upload_dir": str(options.upload_dir),
                          "playground": list(mounted(request.app))})


async def charts(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    raw = request.query.get("since")
    try:
        since = float(raw) if raw else None
    except ValueError:
        since = None
    return json_response({"interval_s": state.options.sample_interval_s,
                          "window_s": state.options.chart_window_s,
                          "capacity": state.options.chart_points,
                          "columns": state.series.columns(since)})


async def logs(request: web.Request) -> web.Response:
    state = request.app[ADMIN]
    limit = state.options.log_lines
    if state.options.under_systemd:
        invocation = state.options.environ.get("INVOCATION_ID", "")
        journal = await admin_system.read_journal(limit, [f"_SYSTEMD_INVOCATION_ID={invocation}"])
        if journal.available:
            return json_response({"source": "journal", "note": "",
                                  "lines": [x.to_dict() for x in journal.lines]})
        note = f"journal unavailable ({journal.reason}); showing the in-process log"
    else:
        note = "not running under systemd: the in-process log of this server"
    return json_response({"source": "memory", "note": note,
                          "lines": [x.to_dict() for x in state.logs.lines(limit)]})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/health", health)
    r.add_get("/api/overview", overview)
    r.add_get("/api/accelerators", accelerators)
    r.add_get("/api/memory", memory)
    r.add_get("/api/models", models)
    r.add_get("/api/charts", charts)
    r.add_get("/api/logs", logs)
