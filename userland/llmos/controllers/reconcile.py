"""Reconcile models against the inventory: plan, diff, act (level-triggered).

``Reconciler`` is the ``on_change`` callback of ``DeviceController``: given the
inventory now, it plans every configured model again and applies only the difference
to the model registry (the ``ModelTarget``), so calling it twice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from llmos.config import ModelConfig
from llmos.controllers.placement import (
    Action,
    ActionKind,
    Placement,
    PlacementState,
    Plan,
    diff,
    plan,
)
from llmos.hw.model import Inventory

log = logging.getLogger(__name__)


class ModelTarget(Protocol):
    """What the model registry (``llmos.registry.ModelRegistry``) does for the reconciler."""

    async def drain(self, model: str, reason: str) -> None:
        """Stop admitting requests (not ready), finish those in flight, unload, free memory."""
        ...

    async def place(self, placement: Placement) -> None:
        """Load the model on ``placement.device`` with ``placement.instances``; ready after.

        A FALLBACK placement must be shown as such (state and reason) on status pages.
        """
        ...

    async def mark_unavailable(self, placement: Placement) -> None:
        """Not loaded and not ready; status shows ``placement.reason``."""
        ...


class Reconciler:
    def __init__(self, models: Iterable[ModelConfig], target: ModelTarget) -> None:
        self._models = tuple(models)
        self._target = target
        self._plan: Plan | None = None
        self._inventory: Inventory | None = None
        self._lock = asyncio.Lock()

    @property
    def plan(self) -> Plan:
        """The placements in force (empty before the first reconcile)."""
        return self._plan or Plan()

    async def __call__(self, inventory: Inventory) -> None:
        async with self._lock:
            self._inventory = inventory
            new = plan(inventory, self._models, self._plan)
            actions = diff(self._plan, new)
            self._plan = new
            # Drains first (they free devices and memory), then every load at once: each
            # model loads in its own worker thread, so a small model is not queued behind
            # a large one, and decrypting one overlaps with building another's session.
            for action in actions:
                if action.kind is ActionKind.DRAIN:
                    await self._apply(action)
            await asyncio.gather(*(self._apply(a) for a in actions
                                   if a.kind is not ActionKind.DRAIN))

    async def set_models(self, models: Iterable[ModelConfig]) -> None:
        """A configuration change: reconcile again against the last inventory."""
        self._models = tuple(models)
        if self._inventory is not None:
            await self(self._inventory)

    async def _apply(self, action: Action) -> None:
        quiet = action.placement is None or action.placement.state is PlacementState.PLACED
        log.log(logging.INFO if quiet else logging.WARNING, "%s %s: %s", action.kind,
                action.model, action.reason)
        try:
            if action.kind is ActionKind.DRAIN:
                await self._target.drain(action.model, action.reason)
            elif action.placement is not None and action.kind is ActionKind.LOAD:
                await self._target.place(action.placement)
            elif action.placement is not None:
                await self._target.mark_unavailable(action.placement)
        except Exception:  # one model failing must not stop the others
            log.exception("%s of %s failed", action.kind, action.model)
