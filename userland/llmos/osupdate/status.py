"""What the update agent reports in ``status.json`` (pure, but for ``write``/``read``).

::

    {"state": "downloading" | "staged" | "up-to-date" | "failed" | "rebooting",
     "running": "1",          # IMAGE_VERSION of the booted image (null on a host)
     "staged": "2",           # newest installed version newer than the running one, or null
     "error": null,           # or why it failed (the last lines of sysupdate's stderr)
     "source": "http://10.0.2.2:8080/",   # the update's source, null for a reboot
     "started_at": 1765000000.0, "finished_at": 1765000042.5,   # unix time; null while busy
     "log_tail": ["..."]}     # the last lines sysupdate printed

The file is written atomically (0644): a reader sees the previous status or the new one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from llmos.files import atomic_write
from llmos.osupdate.vercmp import compare

STATES = ("downloading", "staged", "up-to-date", "failed", "rebooting")
LOG_TAIL_LINES = 20
ERROR_LINES = 5


@dataclass(frozen=True)
class Status:
    state: str
    running: str | None
    staged: str | None = None
    error: str | None = None
    source: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    log_tail: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["log_tail"] = list(self.log_tail)
        return doc

    def finished(self, state: str, now: float, **changes: Any) -> Status:
        return replace(self, state=state, finished_at=now, **changes)


def tail(text: str, lines: int) -> tuple[str, ...]:
    """The last ``lines`` non-blank lines of ``text``."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return tuple(kept[-lines:])


#: systemd-pull's progress lines ("Got 69% of URL. 933ms left at 13.5M/s."): not a reason.
_PROGRESS = re.compile(r"^Got \d+% of ")


def reasons(stderr: str) -> str:
    """``stderr`` without download progress lines: what the error should show."""
    return "\n".join(line for line in stderr.splitlines() if not _PROGRESS.match(line))


def staged_version(running: str | None, newest_installed: str | None) -> str | None:
    """The version a reboot would start: the newest installed one, if newer than running."""
    if newest_installed is None:
        return None
    if running is None or compare(newest_installed, running) > 0:
        return newest_installed
    return None


def after_update(begun: Status, now: float, returncode: int, output: Iterable[str],
                 stderr: str, newest_installed: str | None, list_error: str | None) -> Status:
    """The final status of an update run: sysupdate's exit code and output, and what its
    ``list`` found installed afterwards (or why it could not tell)."""
    log_tail = tail("\n".join(output), LOG_TAIL_LINES)
    if returncode != 0:
        why = "\n".join(tail(reasons(stderr), ERROR_LINES)) or \
            f"systemd-sysupdate exited {returncode}"
        return begun.finished("failed", now, error=why, log_tail=log_tail)
    if list_error is not None:
        return begun.finished("failed", now, error=list_error, log_tail=log_tail)
    staged = staged_version(begun.running, newest_installed)
    return begun.finished("staged" if staged else "up-to-date", now, staged=staged,
                          log_tail=log_tail)


def from_dict(doc: Mapping[str, Any]) -> Status:
    """A status read back (the admin page); unknown keys are dropped, wrong ones refused."""
    if doc.get("state") not in STATES:
        raise ValueError(f"unknown state {doc.get('state')!r}")

    def opt_str(key: str) -> str | None:
        v = doc.get(key)
        return None if v is None else str(v)

    def opt_float(key: str) -> float | None:
        v = doc.get(key)
        return None if v is None else float(v)

    log_tail = doc.get("log_tail") or []
    return Status(str(doc["state"]), opt_str("running"), opt_str("staged"), opt_str("error"),
                  opt_str("source"), opt_float("started_at"), opt_float("finished_at"),
                  tuple(str(line) for line in log_tail) if isinstance(log_tail, list) else ())


def write(path: Path, status: Status) -> None:
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    atomic_write(path, [json.dumps(status.to_dict(), indent=1).encode() + b"\n"], mode=0o644)


def read(path: Path) -> Status | None:
    """The last status, None when there is none (or it cannot be read as one)."""
    try:
        doc = json.loads(path.read_bytes())
        return from_dict(doc) if isinstance(doc, dict) else None
    except (OSError, ValueError, TypeError):
        return None
