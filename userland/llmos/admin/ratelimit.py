"""Login rate limiting per client address, with exponential back-off (pure).

Each address gets ``free_attempts`` failures; every failure after that locks it out for
``base_s * 2**k`` seconds (k = failures beyond the free ones, minus one), at most
``max_s``. A success clears the address; a quiet ``forget_s`` clears it too. While locked
out, the login is refused before the password is even checked (HTTP 429, Retry-After).
The table is bounded (oldest entries dropped) so spoofed addresses cannot fill memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LimitPolicy:
    free_attempts: int = 5
    base_s: float = 1.0
    max_s: float = 15 * 60.0
    forget_s: float = 60 * 60.0
    max_clients: int = 10_000


@dataclass(frozen=True)
class _Record:
    failures: int
    last_failure: float
    locked_until: float


class LoginLimiter:
    def __init__(self, policy: LimitPolicy = LimitPolicy()) -> None:
        self.policy = policy
        self._clients: dict[str, _Record] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def _live(self, client: str, now: float) -> _Record | None:
        record = self._clients.get(client)
        if record is not None and now - record.last_failure >= self.policy.forget_s:
            del self._clients[client]
            return None
        return record

    def retry_after(self, client: str, now: float) -> int | None:
        """Whole seconds this client must wait before trying again, or None if it may."""
        record = self._live(client, now)
        if record is None or now >= record.locked_until:
            return None
        return max(1, math.ceil(record.locked_until - now))

    def lockout_s(self, failures: int) -> float:
        beyond = failures - self.policy.free_attempts
        if beyond <= 0:
            return 0.0
        return min(self.policy.max_s, self.policy.base_s * 2.0 ** (beyond - 1))

    def failure(self, client: str, now: float) -> int | None:
        """Record a failed login; the lockout it earned (seconds, rounded up) or None."""
        record = self._live(client, now)
        failures = (record.failures if record else 0) + 1
        wait = self.lockout_s(failures)
        if client not in self._clients and len(self._clients) >= self.policy.max_clients:
            oldest = min(self._clients, key=lambda c: self._clients[c].last_failure)
            del self._clients[oldest]
        self._clients[client] = _Record(failures, now, now + wait)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def success(self, client: str) -> None:
        self._clients.pop(client, None)
