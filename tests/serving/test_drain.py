"""Drain: not ready at once, requests still served while draining, in-flight work finishes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from llmos.web.drain import DRAIN, Drain

from .conftest import Packs, Start, standard_config, wait_settled

ALPHA = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


async def _entered(drain: Drain, request: asyncio.Future[ClientResponse]) -> None:
    """Wait until the request is inside the server (it must not have finished yet)."""
    while drain.in_flight == 0:
        assert not request.done(), await request.result().text()
        await asyncio.sleep(0.001)


def _slow_body(rows: int) -> dict[str, object]:
    x = np.random.default_rng(0).standard_normal((rows, 512)).astype(np.float32)
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 512],
                        "data": x.ravel().tolist()}]}


async def test_drain_reports_not_ready_and_finishes_in_flight(start_app: Start, packs: Packs,
                                                              tmp_path: Path) -> None:
    client: TestClient
    client, _ = await start_app(standard_config(packs, tmp_path))
    await wait_settled(client)
    assert (await client.get("/v2/health/ready")).status == 200
    drain = client.server.app[DRAIN]

    in_flight = asyncio.ensure_future(client.post("/v2/models/slow/infer", json=_slow_body(16)))
    await _entered(drain, in_flight)
    draining = asyncio.ensure_future(drain.run(drain_s=0.5, grace_s=30))
    await asyncio.sleep(0.05)
    ready = await client.get("/v2/health/ready")
    assert ready.status == 400 and (await ready.json())["status"] == "draining"
    assert (await client.get("/health")).status == 503
    assert (await client.get("/health/ready")).status == 503
    assert (await client.get("/v2/health/live")).status == 200
    assert (await client.get("/health/live")).status == 200
    served = await client.post("/v2/models/alpha/infer", json=ALPHA)  # still served
    assert served.status == 200 and served.headers.get("Connection", "").lower() == "close"

    report = await draining
    resp = await in_flight
    assert resp.status == 200, await resp.text()
    assert len((await resp.json())["outputs"][0]["data"]) == 16 * 512
    assert report.left_in_flight == 0 and report.served_while_draining >= 1
    assert report.seconds >= 0.5


async def test_grace_period_bounds_the_wait(aiohttp_client: Any) -> None:
    """A request that outlives the grace period: the drain stops waiting for it, and says so."""
    drain, release = Drain(), asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    app = web.Application(middlewares=[drain.middleware()])
    app.router.add_get("/stuck", stuck)
    client = await aiohttp_client(app)
    in_flight = asyncio.ensure_future(client.get("/stuck"))
    await _entered(drain, in_flight)
    report = await drain.run(drain_s=0, grace_s=0.05)
    assert report.left_in_flight == 1 and 0.05 <= report.seconds < 5
    release.set()
    resp = await in_flight
    assert resp.status == 200 and resp.headers.get("Connection", "").lower() == "close"
