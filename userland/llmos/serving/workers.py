"""Worker threads that survive their own crashes, and a record of the crashes for /health.

A batcher's inference threads and a language model's engine thread run loops that catch
what a request can cause; what escapes them (a bug, a failing observer, MemoryError) used
to end the thread silently, and its model then answered nothing but timeouts. ``supervise``
runs such a loop again after a crash (the thread is replaced in place: the same name, a
fresh loop), after ``on_crash`` has failed the work the dead loop held; ``CrashLog`` keeps
the recent crashes, which /health lists as warnings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Crashes older than this no longer show in /health.
SHOW_S = 600.0


@dataclass(frozen=True)
class Crash:
    worker: str
    error: str
    at: float  # time.time()


class CrashLog:
    """The recent worker crashes, thread-safe."""

    def __init__(self, keep: int = 32) -> None:
        self._crashes: deque[Crash] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.total = 0

    def record(self, worker: str, exc: BaseException) -> None:
        with self._lock:
            self._crashes.append(Crash(worker, f"{type(exc).__name__}: {exc}", time.time()))
            self.total += 1

    def warnings(self, now: float | None = None) -> tuple[str, ...]:
        now = time.time() if now is None else now
        with self._lock:
            recent = [c for c in self._crashes if now - c.at < SHOW_S]
        return tuple(f"worker thread {c.worker} crashed ({c.error}) "
                     f"{now - c.at:.0f} s ago and was restarted" for c in recent)


#: The process's crash log (the batchers and engines record here; /health reads it).
CRASHES = CrashLog()


def supervise(name: str, loop: Callable[[], None], on_crash: Callable[[], None],
              crashes: CrashLog = CRASHES, pause_s: float = 0.1) -> Callable[[], None]:
    """A thread target running ``loop`` until it returns (closed); after an exception,
    ``on_crash()`` then ``loop`` again."""
    def run() -> None:
        while True:
            try:
                loop()
                return
            except BaseException as exc:
                log.exception("worker thread %s crashed; restarting it", name)
                crashes.record(name, exc)
                try:
                    on_crash()
                except Exception:
                    log.exception("worker thread %s: cleaning up after the crash failed", name)
                time.sleep(pause_s)
    return run
