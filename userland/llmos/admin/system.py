"""What the Overview and Logs pages read from the system: the TPM's PCRs (sysfs) and the
journal (``journalctl -o json``); the machine's uptime is ``llmos.hw.usage``'s. Every reader
answers "unavailable, because..." instead of failing when the thing is absent (a host
without TPM or journal)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmos.admin.logs import LogLine

log = logging.getLogger(__name__)

TPM_CLASS = Path("sys/class/tpm/tpm0")
JOURNAL_TIMEOUT_S = 5.0
_PRIORITIES = ("EMERG", "ALERT", "CRIT", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")


@dataclass(frozen=True)
class TpmInfo:
    present: bool
    description: str  # "TPM 2.0 (tpm0)" or why there is none
    pcrs: Mapping[int, str] = field(default_factory=dict)  # SHA-256 bank, hex
    pcr_note: str = ""  # why there are no PCR values, when there are none

    def to_dict(self) -> dict[str, object]:
        return {"present": self.present, "description": self.description,
                "pcrs": {str(k): v for k, v in sorted(self.pcrs.items())},
                "pcr_note": self.pcr_note}


def read_tpm(root: Path = Path("/")) -> TpmInfo:
    """TPM presence and its SHA-256 PCRs from sysfs (Linux >= 5.12 exposes pcr-sha256/)."""
    tpm = root / TPM_CLASS
    if not tpm.exists():
        return TpmInfo(False, "no TPM found (/sys/class/tpm/tpm0 is absent)", {},
                       "PCR values unavailable: no TPM")
    version = "TPM 2.0" if (root / "dev/tpmrm0").exists() or (tpm / "pcr-sha256").exists() \
        else "TPM"
    bank = tpm / "pcr-sha256"
    pcrs: dict[int, str] = {}
    if bank.is_dir():
        for entry in bank.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                pcrs[int(entry.name)] = entry.read_text().strip().lower()
            except OSError as exc:
                log.debug("cannot read %s: %s", entry, exc)
    note = "" if pcrs else "PCR values unavailable: this kernel does not expose pcr-sha256"
    return TpmInfo(True, f"{version} (tpm0)", pcrs, note)


@dataclass(frozen=True)
class Journal:
    available: bool
    reason: str  # why not, when unavailable
    lines: tuple[LogLine, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"available": self.available, "reason": self.reason,
                "lines": [line.to_dict() for line in self.lines]}


def _message(value: object) -> str:
    if isinstance(value, list):  # journald sends non-UTF-8 messages as byte arrays
        return bytes(int(b) & 0xFF for b in value).decode("utf-8", "replace")
    return str(value)


def parse_journal(lines: Iterable[str]) -> tuple[LogLine, ...]:
    """``journalctl -o json`` output (one object a line) -> log lines; bad lines skipped."""
    out = []
    for raw in lines:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "MESSAGE" not in entry:
            continue
        try:
            t = int(entry.get("__REALTIME_TIMESTAMP", "0")) / 1e6
            priority = int(entry.get("PRIORITY", 6))
        except (TypeError, ValueError):
            t, priority = 0.0, 6
        source = str(entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM")
                     or entry.get("_SYSTEMD_UNIT") or "kernel")
        level = _PRIORITIES[priority] if 0 <= priority < len(_PRIORITIES) else "INFO"
        out.append(LogLine(t, level, source, _message(entry["MESSAGE"])))
    return tuple(out)


async def read_journal(limit: int, matches: Sequence[str] = (),
                       journalctl: str = "journalctl") -> Journal:
    """The last ``limit`` entries of this boot (``matches``: journalctl field matches)."""
    exe = shutil.which(journalctl)
    if exe is None:
        return Journal(False, "journalctl is not installed here")
    args = [exe, "-b", "-o", "json", "-n", str(limit), "--no-pager", *matches]
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), JOURNAL_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return Journal(False, f"journalctl did not answer within {JOURNAL_TIMEOUT_S:.0f} s")
    except OSError as exc:
        return Journal(False, f"journalctl could not run: {exc.strerror}")
    lines = parse_journal(out.decode("utf-8", "replace").splitlines())
    if proc.returncode != 0 or not lines:
        detail = err.decode("utf-8", "replace").strip().splitlines()
        why = detail[-1] if detail else f"journalctl exited {proc.returncode} with no entries"
        return Journal(False, f"no journal for this boot: {why}")
    return Journal(True, "", lines)

