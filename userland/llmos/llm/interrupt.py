"""Stopping one runtime call from another thread, before it starts or while it runs.

A prompt's prefill is one long ``run`` of the decoder graph (seconds for a long prompt on a
CPU). When its request is cancelled (the client went away, its deadline passed) the event
loop calls ``Interrupt.request``; the decoder has hooked its run's ``terminate`` flag to it
(``on_request``), and onnxruntime checks that flag between graph nodes, so the run ends
within one node instead of at the end of the prompt. A request made before the run starts
makes it stop at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Interrupted(Exception):
    """The run was stopped because its interrupt was requested."""


class Interrupt:
    """A one-way flag with hooks, safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested = False
        self._hooks: list[Callable[[], None]] = []

    @property
    def requested(self) -> bool:
        return self._requested

    def request(self) -> None:
        with self._lock:
            self._requested = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def on_request(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` when the interrupt is requested (now, if it already was)."""
        with self._lock:
            if not self._requested:
                self._hooks.append(hook)
                return
        hook()
