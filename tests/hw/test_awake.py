"""The cores kept awake while requests come (``llmos.hw.awake``): the hold's timing with a
fake device and clock, and the kernel's own PM QoS device where this process may open it."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from llmos.hw.awake import DEVICE, CpuAwake, current_latency, request_latency


class FakeDevice:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.opened = 0
        self.closed: list[int] = []
        self.now = 100.0
        self.busy = False

    def acquire(self) -> int:
        if self.refuse:
            raise PermissionError(13, "Permission denied")
        self.opened += 1
        return 1000 + self.opened

    def awake(self, hold_s: float) -> CpuAwake:
        return CpuAwake(hold_s, lambda: self.busy, self.acquire, self.closed.append,
                        lambda: self.now)


async def test_held_from_a_request_until_hold_s_after_the_last() -> None:
    dev = FakeDevice()
    awake = dev.awake(1.0)
    assert not awake.held
    awake.touch()
    awake.touch()
    assert awake.held and dev.opened == 1  # one request to the kernel, however many touches
    dev.now += 0.6
    awake.touch()  # a later request: the hold runs from it
    dev.now += 0.6
    awake.expire()  # 1.2 s after the first, 0.6 after the last: still held
    assert awake.held and dev.closed == []
    dev.now += 0.5
    awake.expire()
    assert not awake.held and dev.closed == [1001]
    assert awake.gauges()[0].value == 0.0
    awake.touch()  # the next request asks again
    assert awake.held and dev.opened == 2 and awake.gauges()[0].value == 1.0
    awake.close()
    assert dev.closed == [1001, 1002]


async def test_the_loop_releases_it_by_itself() -> None:
    awake = CpuAwake(0.05, acquire=FakeDevice().acquire, release=lambda fd: None)
    awake.touch()
    assert awake.held
    await asyncio.sleep(0.03)
    awake.touch()
    await asyncio.sleep(0.04)  # 0.07 s after the first request, 0.04 after the last
    assert awake.held
    await asyncio.sleep(0.1)
    assert not awake.held


async def test_held_while_requests_are_still_being_answered() -> None:
    """An LLM's stream outlasts its arrival: the hold ends ``hold_s`` after it ends."""
    dev = FakeDevice()
    awake = dev.awake(1.0)
    awake.touch()
    dev.busy = True
    for _ in range(5):
        dev.now += 1.5
        awake.expire()
        assert awake.held
    dev.busy = False
    dev.now += 0.9
    awake.expire()
    assert awake.held
    dev.now += 0.2
    awake.expire()
    assert not awake.held


async def test_a_device_it_may_not_open_is_logged_once(caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    dev = FakeDevice(refuse=True)
    awake = dev.awake(1.0)
    with caplog.at_level(logging.WARNING, logger="llmos.hw.awake"):
        for _ in range(3):
            awake.touch()
    assert not awake.held
    assert awake.unavailable == f"{DEVICE}: Permission denied"
    assert len(caplog.records) == 1 and "Permission denied" in caplog.text


async def test_zero_never_holds() -> None:
    dev = FakeDevice()
    awake = dev.awake(0.0)
    awake.touch()
    assert not awake.held and dev.opened == 0 and awake.unavailable


@pytest.mark.skipif(not os.access(DEVICE, os.R_OK | os.W_OK),
                    reason=f"{DEVICE} cannot be opened here (needs root and the device node)")
def test_the_kernel_holds_the_request_while_the_descriptor_is_open() -> None:
    before = current_latency()
    fd = request_latency(0)
    try:
        assert current_latency() == 0  # no core may sleep deeper than polling
    finally:
        os.close(fd)
    assert current_latency() == before
