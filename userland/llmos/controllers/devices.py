"""The device controller: follow hot-plug, keep accelerators claimed, reconcile again.

Level-triggered: a udev event never says what to do, it only marks the world "maybe
changed". After a short settle time the controller rescans the whole inventory; if what
placement depends on changed, it claims new accelerators, forgets removed ones and calls
``on_change(inventory)`` (the ``Reconciler``), one call at a time. Every event and every
change is kept in a bounded history for the admin page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from llmos.hw.claim import Claim, Claimer
from llmos.hw.model import DeviceEvent, Inventory

log = logging.getLogger(__name__)


class EventSource(Protocol):
    """A udev monitor (``llmos.hw.udev.UdevMonitor``)."""

    def start(self) -> None: ...
    def fileno(self) -> int: ...
    def drain(self) -> list[DeviceEvent]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class HotplugEvent:
    at: float  # time.time()
    action: str  # a udev action (add, remove, change, bind, unbind), or added/removed
    device: str  # PCI address (or sysfs path when it has none)
    detail: str  # subsystem for udev events; model / driver for inventory changes


class DeviceController:
    def __init__(
        self,
        scan: Callable[[], Inventory],
        on_change: Callable[[Inventory], Awaitable[None]],
        *,
        monitor: EventSource | None = None,
        claimer: Claimer | None = None,
        settle_s: float = 0.25,
        history: int = 256,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._scan = scan
        self._on_change = on_change
        self._monitor = monitor
        self._claimer = claimer
        self._settle_s = settle_s
        self._history: deque[HotplugEvent] = deque(maxlen=history)
        self._clock = clock
        self._inventory: Inventory | None = None
        self._claims: dict[str, Claim] = {}
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reading = False

    # --- what status pages read ----------------------------------------------------------
    @property
    def inventory(self) -> Inventory:
        return self._inventory or Inventory()

    def history(self) -> tuple[HotplugEvent, ...]:
        return tuple(self._history)

    def claims(self) -> tuple[Claim, ...]:
        return tuple(self._claims.values())

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Scan, claim and reconcile once (awaited: models are placed on return), then follow."""
        if self._monitor is not None:
            self._monitor.start()  # before the scan, so no event falls between the two
        await self._reconcile(force=True)
        loop = asyncio.get_running_loop()
        if self._monitor is not None:
            loop.add_reader(self._monitor.fileno(), self._readable)
            self._reading = True
        self._task = asyncio.create_task(self._run(), name="device-controller")

    async def stop(self) -> None:
        if self._monitor is not None:
            if self._reading:
                asyncio.get_running_loop().remove_reader(self._monitor.fileno())
                self._reading = False
            self._monitor.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._claimer is not None:
            for claim in self._claims.values():
                self._claimer.release(claim)
        self._claims.clear()

    def request(self) -> None:
        """Reconcile again soon (after a config edit, say), as if a device had changed."""
        self._dirty.set()

    # --- the loop ------------------------------------------------------------------------
    def _readable(self) -> None:
        assert self._monitor is not None
        try:
            events = self._monitor.drain()
        except OSError as exc:
            log.warning("reading udev events failed: %s", exc)
            return
        for e in events:
            self._history.append(HotplugEvent(self._clock(), e.action, e.address or e.sys_path,
                                              e.subsystem))
        if events:
            self._dirty.set()

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._settle_s)  # one rescan for a burst (pci + drm children)
            self._dirty.clear()
            try:
                await self._reconcile()
            except Exception:  # keep following devices whatever one round did
                log.exception("device reconcile failed")

    async def _reconcile(self, force: bool = False) -> None:
        inventory = await asyncio.to_thread(self._scan)
        old = self._inventory
        self._inventory = inventory  # fresh memory figures even when nothing else changed
        if not force and old is not None and old.signature() == inventory.signature():
            return
        self._record_changes(old, inventory)
        if self._claimer is not None:
            await asyncio.to_thread(self._update_claims, self._claimer, inventory)
        await self._on_change(inventory)

    def _record_changes(self, old: Inventory | None, new: Inventory) -> None:
        before = {a.address: a for a in (old.accelerators if old else ())}
        after = {a.address: a for a in new.accelerators}
        now = self._clock()
        for address in sorted(before.keys() - after.keys()):
            log.warning("accelerator %s (%s) is gone", address, before[address].model)
            self._history.append(HotplugEvent(now, "removed", address, before[address].model))
        for address in sorted(after.keys() - before.keys()):
            a = after[address]
            log.info("accelerator %s: %s %s, driver %s, NUMA node %s", address, a.vendor,
                     a.model, a.driver, a.numa_node)
            self._history.append(HotplugEvent(now, "added", address,
                                              f"{a.model} (driver {a.driver})"))

    def _update_claims(self, claimer: Claimer, inventory: Inventory) -> None:
        present = {a.address for a in inventory.accelerators}
        for address in [a for a in self._claims if a != "shared" and a not in present]:
            del self._claims[address]  # its nodes left with it
        for a in inventory.accelerators:
            previous = self._claims.get(a.address)
            if previous is None or {n.path for n in previous.nodes} != {n.path for n in a.nodes}:
                self._claims[a.address] = claimer.claim(a, previous)
        if inventory.shared_nodes and "shared" not in self._claims:
            self._claims["shared"] = claimer.claim_shared(inventory.shared_nodes)
