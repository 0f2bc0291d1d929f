"""When a generation ends, and which text is safe to emit meanwhile (pure).

A generation stops at an end-of-sequence token, at the first occurrence of a stop
sequence in the decoded text (the stop sequence itself is not returned), or after
``max_tokens``. Text that might be the beginning of a stop sequence is held back until
it is clear either way, so a streamed answer never shows half a stop sequence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class StopCriteria:
    max_tokens: int
    eos_token_ids: frozenset[int] = frozenset()
    stop: tuple[str, ...] = ()


def _held_back(text: str, stops: Iterable[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop sequence."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest


class StopChecker:
    """Feeds on (token, text delta) pairs; answers (text to emit, finish reason or None)."""

    def __init__(self, criteria: StopCriteria) -> None:
        self.criteria = criteria
        self.generated = 0
        self._pending = ""

    def feed(self, token_id: int, delta: str) -> tuple[str, FinishReason | None]:
        self.generated += 1
        c = self.criteria
        if token_id in c.eos_token_ids:
            return self._drain(), "stop"
        self._pending += delta
        hits = [i for i in (self._pending.find(s) for s in c.stop if s) if i >= 0]
        if hits:
            out = self._pending[:min(hits)]
            self._pending = ""
            return out, "stop"
        if self.generated >= c.max_tokens:
            return self._drain(), "length"
        keep = _held_back(self._pending, c.stop)
        cut = len(self._pending) - keep
        out, self._pending = self._pending[:cut], self._pending[cut:]
        return out, None

    def _drain(self) -> str:
        out, self._pending = self._pending, ""
        return out
