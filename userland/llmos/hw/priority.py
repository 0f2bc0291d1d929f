"""Thread priority: a request's heavy work runs at a raised nice value, the event loop not.

Under overload the inference threads keep every core busy and the event loop's thread,
runnable, waits for one like them: ``/health`` then answers in hundreds of milliseconds
though it does almost no work (bench/OVERLOAD.md). On Linux a thread has a nice value of
its own, so the threads that do a request's heavy work lower their priority themselves,
``server.worker_nice`` above the process's, and the scheduler lets the loop run first:

* the batchers' inference workers and the language models' engine threads (``lower`` as
  their loop starts);
* the event loop's default executor (``executor``): bodies decoded, texts tokenised and
  templated, sessions built off the loop (``asyncio.to_thread``);
* onnxruntime's thread pools: a new thread inherits its creator's nice value, so a session
  built by ``in_lowered_thread`` starts its pool threads at the lowered priority.

The event loop's thread is never lowered: without CAP_SYS_NICE (the service has none) a
raised nice value cannot be lowered again. ``configure`` is called once, by the
composition root; before it (and with 0) nothing is changed. A refused ``setpriority``
(a seccomp filter, say) is logged once and the work runs at the priority it has.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Linux's lowest priority (highest nice value).
MAX_NICE = 19


def target(base: int, increment: int) -> int | None:
    """The nice value of the workers of a process at ``base``; None: leave them alone."""
    if increment <= 0:
        return None
    return min(MAX_NICE, base + increment)


def needs_lowering(current: int, level: int | None) -> bool:
    """Whether a thread at ``current`` must be lowered to ``level`` (never raised)."""
    return level is not None and current < level


class _State:
    level: int | None = None  # the workers' nice value; None: off
    warned = False


_STATE = _State()


def configure(increment: int) -> int | None:
    """Workers run ``increment`` above the calling thread's nice value from now on (call
    it on the event loop's thread, before any worker starts). Returns their nice value."""
    _STATE.level = target(thread_nice(), increment)
    _STATE.warned = False
    return _STATE.level


def thread_nice(tid: int | None = None) -> int:
    """The nice value of thread ``tid`` (default: the calling thread)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id() if tid is None else tid)


def lower() -> None:
    """Lower the calling thread to the workers' priority (call it on the thread itself)."""
    wanted = _STATE.level
    if wanted is None:
        return
    try:
        if needs_lowering(thread_nice(), wanted):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), wanted)
    except OSError as exc:
        if not _STATE.warned:
            _STATE.warned = True
            log.warning("cannot lower the worker threads' priority (%s): inference competes "
                        "with the event loop for the CPU", exc)


def in_lowered_thread(build: Callable[[], T]) -> T:
    """``build()``, called in a thread at the workers' priority, so that the threads it
    starts (onnxruntime's pools) inherit it. Runs in the caller where that is already so."""
    if not needs_lowering(thread_nice(), _STATE.level):
        return build()
    with ThreadPoolExecutor(1, thread_name_prefix="llmos-lowered-build",
                            initializer=lower) as pool:
        return pool.submit(build).result()


def executor() -> ThreadPoolExecutor | None:
    """A default executor for the event loop whose threads run at the workers' priority;
    None when priorities are off (the loop keeps its own)."""
    if _STATE.level is None:
        return None
    return ThreadPoolExecutor(thread_name_prefix="llmos-worker", initializer=lower)
