"""Version order as systemd's ``strverscmp_improved`` has it (pure).

Both strings are cut into alternating runs of digits and of other characters; runs of
digits compare as numbers ("2" < "10", "1.9" < "1.10"), other runs character by
character, and a version that continues after the other has ended is the newer one
("1.2" < "1.2.1"), except when what follows is a "~" (a pre-release: "2~rc1" < "2").
This covers the versions LLM OS cuts (digits and dots) and the common extras of systemd's
rule; it is not a byte-exact port of every corner of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_TOKEN = re.compile(r"\d+|~|[^\d~]+")


def _tokens(v: str) -> list[str]:
    return _TOKEN.findall(v)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, equal to, or newer than ``b``."""
    ta, tb = _tokens(a), _tokens(b)
    for x, y in zip(ta, tb, strict=False):
        if x == y:
            continue
        if x == "~" or y == "~":
            return -1 if x == "~" else 1
        if x.isdigit() and y.isdigit():
            nx, ny = int(x), int(y)
            if nx != ny:
                return -1 if nx < ny else 1
            continue  # "01" == "1" numerically
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1  # a number beats a separator or letters
        return -1 if x < y else 1
    rest_a, rest_b = ta[len(tb):], tb[len(ta):]
    if rest_a:
        return -1 if rest_a[0] == "~" else 1
    if rest_b:
        return 1 if rest_b[0] == "~" else -1
    return 0


def newest(versions: Iterable[str]) -> str | None:
    """The newest of ``versions``, None when there are none."""
    best: str | None = None
    for v in versions:
        if best is None or compare(v, best) > 0:
            best = v
    return best
