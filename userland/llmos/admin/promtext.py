"""A parser of the Prometheus text exposition format (version 0.0.4), pure.

The admin console reads the same exposition a scraper would, so its charts follow
whatever series the serving code registers, without reaching into its objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    def label(self, key: str, default: str = "") -> str:
        return next((v for k, v in self.labels if k == key), default)


def _value(text: str) -> float:
    lowered = text.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)


def _labels(text: str, i: int) -> tuple[tuple[tuple[str, str], ...], int]:
    """Parse ``{a="x",b="y"}`` starting at ``text[i] == "{"``; the labels and the next index."""
    pairs: list[tuple[str, str]] = []
    i += 1
    while True:
        while i < len(text) and text[i] in " ,":
            i += 1
        if i >= len(text):
            raise ValueError("unterminated label set")
        if text[i] == "}":
            return tuple(pairs), i + 1
        eq = text.index("=", i)
        key = text[i:eq].strip()
        if text[eq + 1] != '"':
            raise ValueError(f"label {key!r} value is not quoted")
        j, out = eq + 2, []
        while text[j] != '"':
            if text[j] == "\\":
                out.append(_ESCAPES.get(text[j + 1], "\\" + text[j + 1]))
                j += 2
            else:
                out.append(text[j])
                j += 1
        pairs.append((key, "".join(out)))
        i = j + 1


def parse_line(line: str) -> Sample | None:
    """One sample line, or None for comments and blank lines. ValueError if malformed."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        labels, rest_at = _labels(line, brace)
        rest = line[rest_at:].split()
    else:
        name, *rest = line.split()
        labels = ()
    if not rest:
        raise ValueError(f"no value in {line!r}")
    return Sample(name, labels, _value(rest[0]))


def parse(text: str) -> Iterator[Sample]:
    """Every sample of an exposition; malformed lines are skipped."""
    for line in text.splitlines():
        try:
            sample = parse_line(line)
        except (ValueError, IndexError):
            continue
        if sample is not None:
            yield sample
