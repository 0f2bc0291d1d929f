"""The in-process log ring: the last lines the supervisor logged (for the Logs page on a
host, where there is no journal to read). A ``logging.Handler``, installed on the root
logger while the admin app runs."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class LogLine:
    t: float  # seconds since the epoch
    level: str  # DEBUG, INFO, WARNING, ERROR, CRITICAL
    source: str  # the logger name (or the journal's identifier)
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"t": self.t, "level": self.level, "source": self.source,
                "message": self.message}


class LogRing(logging.Handler):
    """Keeps the last ``capacity`` records as ``LogLine`` (thread-safe: workers log too)."""

    def __init__(self, capacity: int = 1000, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                message += f" ({record.exc_info[0].__name__}: {record.exc_info[1]})"
        except Exception:  # a bad format string must not break logging
            self.handleError(record)
            return
        line = LogLine(record.created, record.levelname, record.name, message)
        with self._guard:
            self._lines.append(line)

    def lines(self, limit: int | None = None) -> tuple[LogLine, ...]:
        with self._guard:
            items = tuple(self._lines)
        return items if limit is None else items[-limit:]
