"""Keep the CPUs awake while requests come: the kernel's CPU latency request, held a while.

An idle core goes to sleep (a C-state on hardware, a halted vCPU in a virtual machine) and
the next request's work pays for waking it: on a 2-core VM, a MiniLM run that followed
2 ms of sleep took 2.2 ms longer than one that followed another run, and LLM OS served
1.5-1.7x the requests/s at concurrency 1 with the cores kept awake (bench/README.md).

The kernel's interface for it (PM QoS): while ``/dev/cpu_dma_latency`` is held open with a
number of microseconds written to it, cpuidle picks no sleep state that takes longer to
leave; 0 leaves only polling. Polling costs power, so the request is held only while
requests come: from one's arrival until ``hold_s`` after the last arrived, and as long as
any is still being answered (an LLM's stream). Where the device cannot be opened (not
root, a sandbox without it) nothing is held; that is logged once and shown by the
``llmos_cpu_awake`` gauge.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from llmos.hw.resources import MetricSample

log = logging.getLogger(__name__)

DEVICE = Path("/dev/cpu_dma_latency")


def request_latency(us: int, device: Path = DEVICE) -> int:
    """Ask the kernel for CPU wake-ups within ``us`` microseconds: the file descriptor
    that holds the request (it ends when closed)."""
    fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, struct.pack("=i", us))
    except OSError:
        os.close(fd)
        raise
    return fd


def current_latency(device: Path = DEVICE) -> int:
    """The limit in force now, every holder's requests together (microseconds)."""
    with device.open("rb") as f:
        value: int = struct.unpack("=i", f.read(4))[0]
    return value


class CpuAwake:
    """Holds a CPU latency of 0 from a request's arrival (``touch``, called on the event
    loop for each) until ``hold_s`` after the last, or after ``busy`` last said requests
    are still being answered. ``hold_s`` 0: never held."""

    def __init__(self, hold_s: float, busy: Callable[[], bool] = lambda: False,
                 acquire: Callable[[], int] = lambda: request_latency(0),
                 release: Callable[[int], None] = os.close,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_s = hold_s
        self._busy = busy
        self._acquire = acquire
        self._release = release
        self._clock = clock
        self._fd: int | None = None
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.unavailable: str | None = None if hold_s > 0 else "server.cpu_awake_s is 0"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def touch(self) -> None:
        """A request arrived: hold (or keep holding) for ``hold_s`` from now."""
        self._last = self._clock()
        if self._fd is not None or self.unavailable is not None:
            return
        try:
            self._fd = self._acquire()
        except OSError as exc:
            self.unavailable = f"{DEVICE}: {exc.strerror or exc}"
            log.warning("cores are let sleep between requests (%s): requests that find "
                        "them asleep take longer", self.unavailable)
            return
        self._timer = asyncio.get_running_loop().call_later(self.hold_s, self.expire)

    def expire(self) -> None:
        """Release if ``hold_s`` passed since the last request, else look again then."""
        self._timer = None
        if self._fd is None:
            return
        if self._busy():
            self._last = self._clock()
        idle = self._clock() - self._last
        if idle < self.hold_s:
            self._timer = asyncio.get_running_loop().call_later(self.hold_s - idle, self.expire)
            return
        self.close()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._release(fd)

    def gauges(self) -> tuple[MetricSample, ...]:
        return (MetricSample("llmos_cpu_awake", "1 while the cores are kept from sleeping "
                             "between requests (CPU latency request held)", (),
                             float(self.held)),)
