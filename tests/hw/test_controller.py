"""DeviceController and Reconciler behaviour with a scripted scan and a pipe as event source.

The real udev path (pyudev monitor on emulated devices) is covered in umockdev_cases.py;
here the controller's own rules are pinned down: one rescan per burst, no reconcile for an
unchanged inventory, a bounded history, failures that do not stop it, idempotent plans.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from llmos.config import ModelConfig
from llmos.controllers.devices import DeviceController
from llmos.controllers.placement import Placement, PlacementState
from llmos.controllers.reconcile import Reconciler
from llmos.hw.model import Accelerator, DeviceEvent, Inventory

GPU0, GPU1 = "0000:01:00.0", "0000:02:00.0"


def _gpu(address: str, index: int, used: int = 0) -> Accelerator:
    return Accelerator(address, "nvidia", 0x10DE, 0x2330, 0x030200, "H100", "nvidia", 0, (),
                       memory_total_bytes=80, memory_used_bytes=used, cuda_index=index)


class PipeEvents:
    """An event source with a real file descriptor, fed by the test."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._queue: list[DeviceEvent] = []
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def fileno(self) -> int:
        return self._r

    def push(self, action: str, address: str) -> None:
        self._queue.append(DeviceEvent(action, "pci", f"/sys/devices/{address}", address))
        os.write(self._w, b"x")

    def drain(self) -> list[DeviceEvent]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._r, 4096)
        events, self._queue = self._queue, []
        return events

    def close(self) -> None:
        self.closed = True
        os.close(self._r)
        os.close(self._w)


class World:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.scans = 0

    def scan(self) -> Inventory:
        self.scans += 1
        return self.inventory


@pytest.fixture
def events() -> Iterator[PipeEvents]:
    yield PipeEvents()


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_one_rescan_per_burst_and_only_real_changes_reconcile(events: PipeEvents) -> None:
    world = World(Inventory((_gpu(GPU0, 0), _gpu(GPU1, 1))))
    seen: list[Inventory] = []

    async def on_change(inv: Inventory) -> None:
        seen.append(inv)

    ctl = DeviceController(world.scan, on_change, monitor=events, settle_s=0.05)
    await ctl.start()
    assert events.started and world.scans == 1 and len(seen) == 1

    world.inventory = Inventory((_gpu(GPU0, 0),))
    for _ in range(5):  # a burst: pci device and its children
        events.push("remove", GPU1)
    await _until(lambda: len(seen) == 2)
    assert world.scans == 2
    assert ctl.inventory.by_address(GPU1) is None

    world.inventory = Inventory((_gpu(GPU0, 0, used=42),))  # memory moved, nothing else
    events.push("change", GPU0)
    await _until(lambda: world.scans == 3)
    await asyncio.sleep(0.1)
    assert len(seen) == 2  # no reconcile
    assert ctl.inventory.accelerators[0].memory_used_bytes == 42  # but fresh figures

    ctl.request()  # e.g. a configuration edit
    await _until(lambda: world.scans == 4)
    actions = [(h.action, h.device) for h in ctl.history()]
    assert actions[:7] == [("added", GPU0), ("added", GPU1)] + [("remove", GPU1)] * 5
    assert ("removed", GPU1) in actions and ("change", GPU0) in actions
    await ctl.stop()
    assert events.closed


async def test_history_is_bounded(events: PipeEvents) -> None:
    world = World(Inventory())

    async def on_change(inv: Inventory) -> None:
        return None

    ctl = DeviceController(world.scan, on_change, monitor=events, settle_s=0.01, history=8)
    await ctl.start()
    for i in range(20):
        events.push("change", f"0000:00:{i:02x}.0")
    await _until(lambda: len(ctl.history()) == 8 and ctl.history()[-1].device == "0000:00:13.0")
    assert ctl.history()[0].device == "0000:00:0c.0"
    await ctl.stop()


async def test_a_failing_reconcile_does_not_stop_the_controller(events: PipeEvents) -> None:
    world = World(Inventory((_gpu(GPU0, 0),)))
    calls: list[int] = []

    async def on_change(inv: Inventory) -> None:
        calls.append(len(inv.accelerators))
        if len(calls) == 2:
            raise RuntimeError("registry blew up")

    ctl = DeviceController(world.scan, on_change, monitor=events, settle_s=0.01)
    await ctl.start()
    world.inventory = Inventory()
    events.push("remove", GPU0)
    await _until(lambda: len(calls) == 2)
    world.inventory = Inventory((_gpu(GPU0, 0),))
    events.push("add", GPU0)
    await _until(lambda: len(calls) == 3)
    assert calls == [1, 0, 1]
    await ctl.stop()


class Registry:
    def __init__(self, fail_loading: str = "") -> None:
        self.fail_loading = fail_loading
        self.ready: dict[str, str] = {}
        self.unavailable: dict[str, str] = {}
        self.calls: list[str] = []

    async def drain(self, model: str, reason: str) -> None:
        self.calls.append(f"drain {model}")
        self.ready.pop(model, None)

    async def place(self, placement: Placement) -> None:
        self.calls.append(f"load {placement.model} {placement.device}")
        if placement.model == self.fail_loading:
            raise RuntimeError("bad pack")
        self.unavailable.pop(placement.model, None)
        self.ready[placement.model] = str(placement.device)

    async def mark_unavailable(self, placement: Placement) -> None:
        self.calls.append(f"unavailable {placement.model}")
        self.unavailable[placement.model] = placement.reason


def _m(name: str, device: str, fallback: bool = False) -> ModelConfig:
    return ModelConfig(name, Path(f"{name}.pack"), device=device, cpu_fallback=fallback)


async def test_reconciler_is_idempotent_and_one_failure_does_not_stop_the_rest() -> None:
    registry = Registry(fail_loading="bad")
    rec = Reconciler([_m("bad", "cpu"), _m("good", "cuda:0"), _m("later", "cuda:1")], registry)
    inv = Inventory((_gpu(GPU0, 0),))
    await rec(inv)
    assert registry.calls == ["load bad cpu", "load good cuda:0", "unavailable later"]
    assert registry.ready == {"good": "cuda:0"}
    assert "cuda:1 is absent" in registry.unavailable["later"]
    await rec(inv)  # level-triggered: the same world again changes nothing
    assert len(registry.calls) == 3
    assert rec.plan.by_model()["later"].state is PlacementState.UNAVAILABLE


async def test_reconciler_follows_configuration_edits() -> None:
    registry = Registry()
    rec = Reconciler([_m("a", "cuda:0")], registry)
    await rec.set_models([_m("a", "cpu")])  # no inventory yet: nothing to do
    assert registry.calls == []
    await rec(Inventory((_gpu(GPU0, 0),)))
    await rec.set_models([_m("a", "cpu"), _m("b", "any")])
    assert registry.ready == {"a": "cpu", "b": "cuda:0"}
    await rec.set_models([_m("b", "any")])
    assert registry.ready == {"b": "cuda:0"}
    assert registry.calls[-1] == "drain a"


class SlowRegistry(Registry):
    """Loads take a while; records which loads were under way together."""

    def __init__(self) -> None:
        super().__init__()
        self.loading: set[str] = set()
        self.overlap: set[frozenset[str]] = set()

    async def place(self, placement: Placement) -> None:
        self.calls.append(f"loading {placement.model}")
        self.loading.add(placement.model)
        self.overlap.add(frozenset(self.loading))
        await asyncio.sleep(0.05)
        self.loading.discard(placement.model)
        await super().place(placement)

    async def drain(self, model: str, reason: str) -> None:
        await super().drain(model, reason)
        await asyncio.sleep(0.05)
        self.calls.append(f"drained {model}")


async def test_models_load_at_once_after_the_drains() -> None:
    registry = SlowRegistry()
    rec = Reconciler([_m("a", "cuda:0"), _m("b", "cpu"), _m("c", "cpu")], registry)
    await rec(Inventory((_gpu(GPU0, 0),)))
    assert frozenset({"a", "b", "c"}) in registry.overlap  # none queued behind another
    assert registry.ready == {"a": "cuda:0", "b": "cpu", "c": "cpu"}

    registry.calls.clear()
    await rec.set_models([_m("b", "cpu"), _m("c", "cpu"), _m("d", "cpu")])
    # The drain is over before any load starts.
    assert registry.calls == ["drain a", "drained a", "loading d", "load d cpu"]
