"""Login rate limiting: free attempts, then exponential lockouts, per address."""

from __future__ import annotations

from llmos.admin.ratelimit import LimitPolicy, LoginLimiter

POLICY = LimitPolicy(free_attempts=3, base_s=2.0, max_s=30.0, forget_s=3600.0, max_clients=3)


def test_free_attempts_then_doubling_lockouts_up_to_the_cap() -> None:
    lim = LoginLimiter(POLICY)
    t = 0.0
    for _ in range(3):
        assert lim.retry_after("a", t) is None
        assert lim.failure("a", t) is None
    waits = []
    for _ in range(6):
        assert lim.failure("a", t) is not None
        wait = lim.retry_after("a", t)
        assert wait is not None
        waits.append(wait)
        t += wait  # the client waits exactly as told
        assert lim.retry_after("a", t) is None
    assert waits == [2, 4, 8, 16, 30, 30]


def test_addresses_are_limited_separately_and_success_clears() -> None:
    lim = LoginLimiter(POLICY)
    for _ in range(4):
        lim.failure("a", 0)
    assert lim.retry_after("a", 0) is not None
    assert lim.retry_after("b", 0) is None
    lim.success("a")
    assert lim.retry_after("a", 0) is None


def test_a_quiet_hour_forgets_the_failures() -> None:
    lim = LoginLimiter(POLICY)
    for _ in range(5):
        lim.failure("a", 0)
    assert lim.failure("a", 3600) is None  # counted from zero again


def test_the_table_is_bounded() -> None:
    lim = LoginLimiter(POLICY)
    for i, client in enumerate("abcdef"):
        lim.failure(client, float(i))
    assert len(lim) == 3
