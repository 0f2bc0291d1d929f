"""systemd-sysupdate's side of an update: its transfer definitions, rendered from the
image's templates for one source, and what its ``list`` verb says is installed (pure, but
for ``write_definitions``).

``list --json=short`` (systemd 257) prints ``{"current": V, "all": [...], ...}``, where
``current`` is the newest *installed* version (newer systemd spells it "current+pending"
when that version is not booted yet). The plain table is parsed as a fallback::

      VERSION INSTALLED AVAILABLE ASSESSMENT
    ● 2           ✓         ✓     current
      1           ✓               installed

by the header's column positions; the assessment word decides what is installed when it is
one systemd prints, the check mark otherwise.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmos.errors import ConfigError
from llmos.osupdate.request import Source
from llmos.osupdate.vercmp import newest

TEMPLATE_SUFFIX = ".transfer.in"
PLACEHOLDERS = ("@SOURCE_TYPE@", "@SOURCE_PATH@")
#: Assessments (before any "+obsolete", "+incomplete") of a version present on this disk.
INSTALLED_WORDS = frozenset({"current", "installed", "protected", "pending", "partial"})
#: ... and of one only offered by the source.
AVAILABLE_WORDS = frozenset({"available", "candidate"})
_NOT_MARKED = frozenset({"", "-", "✗", "no", "n"})


def render(template: str, source: Source) -> str:
    """A transfer definition: the template with its source type and path filled in."""
    return template.replace("@SOURCE_TYPE@", source.type).replace("@SOURCE_PATH@", source.path)


def write_definitions(templates: Path, out: Path, source: Source) -> list[Path]:
    """Render every ``*.transfer.in`` of ``templates`` into ``out`` (emptied first)."""
    found = sorted(templates.glob("*" + TEMPLATE_SUFFIX)) if templates.is_dir() else []
    if not found:
        raise ConfigError(f"no transfer templates (*{TEMPLATE_SUFFIX}) in {templates}",
                          "the image ships them in /usr/lib/llmos/sysupdate.d")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(mode=0o755, parents=True)
    written = []
    for template in found:
        target = out / template.name.removesuffix(".in")
        target.write_text(render(template.read_text(), source))
        written.append(target)
    return written


@dataclass(frozen=True)
class Row:
    version: str
    installed: bool
    assessment: str = ""


def parse_list_json(text: str) -> str | None:
    """The newest installed version from ``list --json=short``; ValueError if it is not
    that JSON."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or "all" not in doc:
        raise ValueError("not the JSON of 'systemd-sysupdate list'")
    for key in ("current", "current+pending"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _header(line: str) -> dict[str, int] | None:
    """Column starts of a ``list`` table's header line, None if ``line`` is not one."""
    upper = line.upper()
    starts = {n: upper.find(n) for n in ("VERSION", "INSTALLED", "AVAILABLE", "ASSESSMENT")}
    if starts["VERSION"] < 0 or (starts["INSTALLED"] < 0 and starts["ASSESSMENT"] < 0):
        return None
    return {n: s for n, s in starts.items() if s >= 0}


def _installed_mark(line: str, columns: dict[str, int], tokens: list[str]) -> bool:
    """The INSTALLED column's check mark: by the header's position, else any mark between
    the version and the assessment."""
    start = columns.get("INSTALLED", -1)
    if start >= 0 and len(line) > start:
        end = min((s for s in columns.values() if s > start), default=len(line))
        # a centred mark may sit a little left of the header's first letter
        return line[max(0, start - 2):end].strip().lower() not in _NOT_MARKED
    return any(t in ("✓", "+", "yes") for t in tokens)


def parse_row(line: str, columns: dict[str, int]) -> Row | None:
    """One table row: the version (after the state glyph), whether it is installed (the
    assessment when it is a known word, the check mark otherwise) and the assessment."""
    tokens = line.split()
    while tokens and not tokens[0][0].isalnum():  # the glyph column: ●, ○, ↓, *, ...
        tokens.pop(0)
    if not tokens:
        return None
    version, rest = tokens[0], tokens[1:]
    word = rest[-1].split("+", 1)[0].lower() if rest else ""
    if word in INSTALLED_WORDS or word in AVAILABLE_WORDS:
        return Row(version, word in INSTALLED_WORDS, rest[-1])
    return Row(version, _installed_mark(line, columns, rest), "")


def parse_list_table(text: str) -> list[Row]:
    """The rows of the plain ``list`` table (none when there is no header line)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        columns = _header(line)
        if columns is not None:
            return [row for later in lines[i + 1:] if (row := parse_row(later, columns))]
    return []


def newest_installed(rows: Iterable[Row]) -> str | None:
    return newest(r.version for r in rows if r.installed)


def parse_list(outputs: Sequence[str]) -> str | None:
    """The newest installed version from the first output that parses: JSON, or a table.
    ValueError when none does."""
    for text in outputs:
        try:
            return parse_list_json(text)
        except ValueError:
            rows = parse_list_table(text)
            if rows:
                return newest_installed(rows)
    raise ValueError("systemd-sysupdate list printed neither its JSON nor its table")
