"""Placement in the running supervisor, without CUDA: the device controller scans an
inventory the test edits (hot-plug), the pure plan places each model, the supervisor loads,
drains and marks models unavailable, and readiness (/health, v2 model ready) follows.

A model placed on ``cuda:N`` is loaded here by the CPU runtime through a backend injected
by the test (it records the device it was asked for): this machine has no GPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from llmos import config
from llmos.app import DeviceSources, LlmOs
from llmos.hw.claim import Claim, Claimer
from llmos.hw.memory import MemoryPool
from llmos.hw.model import Accelerator, Inventory
from llmos.serving.backend import ModelContext, Served, tensor_backend
from llmos.state import ModelState
from llmos.systemd import Notifier
from llmos.web.admin.state import ADMIN

from .conftest import Vault, write_config

Client = TestClient[web.Request, web.Application]
GPU_ADDRESS = "0000:41:00.0"
H100 = Accelerator(GPU_ADDRESS, "nvidia", 0x10DE, 0x2330, 0x030200, "H100", "nvidia", 0, (),
                   memory_total_bytes=80 << 30, memory_used_bytes=1 << 30, cuda_index=0)


class World:
    """The machine's accelerators as the test has them now."""

    def __init__(self, *accelerators: Accelerator) -> None:
        self.inventory = Inventory(accelerators)

    def scan(self) -> Inventory:
        return self.inventory


class CpuStandIn:
    """Test only: serve models placed on a GPU with the CPU runtime; remember the devices."""

    def __init__(self) -> None:
        self.devices: list[str] = []

    def __call__(self, ctx: ModelContext) -> Served:
        self.devices.append(ctx.options.device)
        return tensor_backend(replace(ctx, options=replace(ctx.options, device="cpu")))


Start = Callable[..., Awaitable[tuple[Client, LlmOs]]]


@pytest.fixture
async def start(aiohttp_client: Any, tmp_path: Path, vault: Vault, small_pack: Path
                ) -> AsyncIterator[Start]:
    pools: list[MemoryPool] = []

    async def run(models: list[dict[str, Any]], world: World, claimer: Claimer | None = None,
                  **kwargs: Any) -> tuple[Client, LlmOs]:
        entries = [{"pack": str(small_pack), **m} for m in models]
        cfg = config.load(write_config(tmp_path / "llmos.toml", vault.keyfile, entries),
                          environ={})
        pool = MemoryPool(pin=True)
        pools.append(pool)
        sup = LlmOs(cfg, notifier=Notifier({}), memory=pool,
                         devices=DeviceSources(world.scan, claimer=claimer, settle_s=0.01),
                         **kwargs)
        client: Client = await aiohttp_client(sup.api_app())
        await until(lambda: sup.health().settled)
        return client, sup

    yield run
    for pool in pools:
        pool.close()


async def until(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def ready(client: Client, model: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get(f"/v2/models/{model}/ready")
    return resp.status, await resp.json()


async def health(client: Client) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/health")
    return resp.status, await resp.json()


async def infer(client: Client, model: str) -> int:
    x = np.ones((1, 64), np.float32)
    resp = await client.post(f"/v2/models/{model}/infer", json={"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 64], "data": x.ravel().tolist()}]})
    return resp.status


def owners(sup: LlmOs) -> set[str]:
    assert sup.memory is not None
    return {u.owner for u in sup.memory.usage()}


async def test_cuda_without_a_gpu_is_unavailable_and_a_fallback_says_so(start: Start) -> None:
    client, sup = await start([{"name": "gpu-only", "device": "cuda"},
                               {"name": "fallback", "device": "cuda:1", "cpu_fallback": True}],
                              World())

    status, doc = await ready(client, "gpu-only")
    assert status == 400 and doc["state"] == "UNAVAILABLE"
    assert "no CUDA GPU is present" in doc["reason"] and "cpu_fallback" in doc["reason"]
    assert await infer(client, "gpu-only") == 503
    assert "gpu-only" not in owners(sup)  # nothing decrypted for it

    status, doc = await ready(client, "fallback")
    assert status == 200 and "cuda:1 is absent" in doc["reason"]
    assert "running on the CPU" in doc["reason"]
    assert await infer(client, "fallback") == 200

    status, h = await health(client)
    assert status == 200 and h["status"] == "degraded"  # one serves: ready, with reasons
    gpu_only, fallback = h["models"]["gpu-only"], h["models"]["fallback"]
    assert (gpu_only["state"], gpu_only["placement"], gpu_only["device"]) == \
        ("UNAVAILABLE", "unavailable", "")
    assert (fallback["state"], fallback["placement"], fallback["device"]) == \
        ("READY", "fallback", "cpu")
    # Decrypted into the pool (less the prepacked weights' pages, given back once loaded).
    assert fallback["memory_bytes"] > 0 and fallback["size_plain"] > 0
    assert any(r.startswith("model gpu-only unavailable: no CUDA GPU") for r in h["reasons"])
    assert any(r.startswith("warning: model fallback runs on cpu: cuda:1 is absent")
               for r in h["reasons"])


async def test_hot_plug_drains_and_reloads_and_readiness_follows(start: Start) -> None:
    world = World(H100)
    stand_in = CpuStandIn()
    client, sup = await start([{"name": "on-gpu", "device": "cuda:0"},
                               {"name": "on-cpu", "device": "cpu"}],
                              world, backends={"tensor": stand_in})
    assert sup.devices is not None
    assert (await ready(client, "on-gpu"))[0] == 200
    # The runtime was asked for the placement's devices (both models load at once).
    assert sorted(stand_in.devices) == ["cpu", "cuda:0"]
    _, h = await health(client)
    assert h["status"] == "ready"
    assert (h["models"]["on-gpu"]["device"], h["models"]["on-gpu"]["placement"]) == \
        ("cuda:0", "placed")
    assert {"on-gpu", "on-cpu"} <= owners(sup)

    world.inventory = Inventory()  # the GPU is unplugged
    sup.devices.request()
    await until(lambda: sup.registry.status("on-gpu").state is ModelState.UNAVAILABLE)
    status, doc = await ready(client, "on-gpu")
    assert status == 400 and "cuda:0 is absent" in doc["reason"]
    assert await infer(client, "on-gpu") == 503
    assert "on-gpu" not in owners(sup)  # drained: its weights are freed
    status, h = await health(client)
    assert status == 200 and h["status"] == "degraded"
    assert any("model on-gpu unavailable: cuda:0 is absent" in r for r in h["reasons"])
    assert await infer(client, "on-cpu") == 200  # the other model never noticed

    world.inventory = Inventory((H100,))  # and plugged in again
    sup.devices.request()
    await until(lambda: sup.registry.status("on-gpu").state is ModelState.READY)
    assert (await ready(client, "on-gpu"))[0] == 200 and await infer(client, "on-gpu") == 200
    _, h = await health(client)
    assert h["status"] == "ready" and h["models"]["on-gpu"]["device"] == "cuda:0"
    assert sorted(stand_in.devices[:2]) == ["cpu", "cuda:0"]
    assert stand_in.devices[2:] == ["cuda:0"]  # on-cpu was never reloaded
    actions = [(e.action, e.device) for e in sup.devices.history()]
    assert ("removed", GPU_ADDRESS) in actions and ("added", GPU_ADDRESS) in actions


async def test_an_operator_unload_outlasts_hot_plug(start: Start) -> None:
    world = World(H100)
    client, sup = await start([{"name": "m", "device": "cuda"}], world,
                              backends={"tensor": CpuStandIn()})
    assert sup.devices is not None
    resp = await client.post("/v2/repository/models/m/unload")
    assert resp.status == 200 and sup.registry.status("m").state is ModelState.UNLOADED
    world.inventory = Inventory()
    sup.devices.request()
    await until(lambda: sup.registry.status("m").state is ModelState.UNAVAILABLE)
    world.inventory = Inventory((H100,))
    sup.devices.request()
    await until(lambda: sup.registry.status("m").placement == "placed")
    await asyncio.sleep(0.1)
    assert sup.registry.status("m").state is ModelState.UNLOADED  # the GPU's return loads nothing
    resp = await client.post("/v2/repository/models/m/load")
    assert resp.status == 200 and (await resp.json())["device"] == "cuda:0"
    assert (await ready(client, "m"))[0] == 200


async def test_the_admin_console_reads_the_supervisors_devices_and_memory(start: Start) -> None:
    _, sup = await start([{"name": "m", "device": "cuda"}], World(H100),
                         backends={"tensor": CpuStandIn()})
    state = sup.admin_app()[ADMIN]
    assert state.devices is sup.devices and state.memory is sup.memory
    assert state.devices is not None and state.memory is not None
    assert [a.address for a in state.devices.inventory.accelerators] == [GPU_ADDRESS]
    assert [u.owner for u in state.memory.usage()] == ["m"]


class DeniedClaimer(Claimer):
    """A claimer without the right to own device nodes (a user's shell, a tight sandbox)."""

    def claim(self, accelerator: Accelerator, previous: Claim | None = None) -> Claim:
        raise PermissionError(1, "Operation not permitted", "/dev/nvidia0")


async def test_models_are_placed_even_when_claiming_fails(
        start: Start, caplog: pytest.LogCaptureFixture) -> None:
    client, sup = await start([{"name": "m", "device": "cuda:0"}], World(H100),
                              claimer=DeniedClaimer(), backends={"tensor": CpuStandIn()})
    assert (await ready(client, "m"))[0] == 200
    assert sup.registry.status("m").device == "cuda:0"
    assert "the device controller did not start (PermissionError" in caplog.text
