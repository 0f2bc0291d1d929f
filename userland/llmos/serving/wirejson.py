"""JSON on the wire (pure): strict reading of request bodies, fast writing of responses.

Reading: whatever the bytes, a value or a ``BadRequestError``.

Python's ``json`` accepts what JSON (RFC 8259) does not, and fails in ways that are not
``ValueError``: ``NaN`` and ``Infinity`` literals, escapes that decode to lone UTF-16
surrogates (``"\\ud800"``, which no UTF-8 encoder accepts later), and nesting deep enough
to raise ``RecursionError``. Here each of them is refused with a message naming the
problem and, where there is one, the field (``messages[0].content``), so the edge answers
400 and nothing downstream meets them.
Numbers that overflow to infinity (``1e400``) are left to each field's range check (a
tensor's values, a sampling parameter): looking for them here would double the parse time.

orjson (the one adapter of it) reads a body first: it refuses all of the above itself and
is several times faster than ``json``. A body it refuses is read again by ``json`` with
the checks above, which name the problem, and so is one that may hold an integer beyond
64 bits, which orjson reads as a float (``json`` as the int it is: ``top_k`` 10**30 is a
valid integer, 1e30 is not). Writing: ``dumps`` writes numpy arrays as JSON numbers, each float
the shortest text that reads back as the same value of its dtype.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NoReturn

import numpy as np
import orjson

from llmos.errors import BadRequestError

#: Nesting deeper than this is refused (no request format here needs more than ~6 levels).
MAX_DEPTH = 64

# An escape of a UTF-16 surrogate: only then can a decoded string hold a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_STRING = re.compile(rb'"(?:[^"\\\\]|\\\\.)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_DIGITS_19 = re.compile(rb"[0-9]{19}")  # what an integer beyond 64 bits has, among others
_HUGE = 2.0**63  # orjson reads an integer beyond 64 bits as a float at least this large


def _refuse(message: str, param: str | None = None, hint: str = "") -> NoReturn:
    raise BadRequestError(message, hint or "send a JSON (RFC 8259) document", param)


def _no_constant(name: str) -> Any:
    _refuse(f"request body is not valid JSON: {name} is not a JSON number",
            hint="send finite numbers only")


def path_text(path: tuple[str | int, ...]) -> str:
    """``("messages", 0, "content")`` -> ``messages[0].content``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(body)"


def _walk(doc: Any) -> Iterator[tuple[tuple[str | int, ...], Any, int]]:
    """(path, value, depth) of every value, keys included as values; no recursion."""
    stack: list[tuple[tuple[str | int, ...], Any, int]] = [((), doc, 0)]
    while stack:
        path, value, depth = stack.pop()
        yield path, value, depth
        if isinstance(value, dict):
            for k, v in value.items():
                yield (*path, k), k, depth + 1
                stack.append(((*path, k), v, depth + 1))
        elif isinstance(value, list):
            stack.extend(((*path, i), v, depth + 1) for i, v in enumerate(value))


def max_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (C speed: strings are cut
    out by a regex, the brackets left are summed by numpy)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(np.cumsum(steps).max())


def _check_strings(doc: Any) -> None:
    for path, value, _depth in _walk(doc):
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                where = path_text(path)
                _refuse(f"{where}: invalid Unicode: a lone surrogate "
                        f"(U+{ord(value[exc.start]):04X}) at character {exc.start}", where,
                        "escape characters outside the BMP as a surrogate pair, or send "
                        "UTF-8")


def _has_huge_number(doc: Any) -> bool:
    """Whether ``doc`` holds a number of magnitude 2**63 or more (a list of numbers is
    checked by ``min``/``max`` at C speed)."""
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            try:
                if value and (max(value) >= _HUGE or min(value) <= -_HUGE):
                    return True
            except TypeError:  # not numbers alone
                stack.extend(value)
        elif isinstance(value, int | float) and abs(value) >= _HUGE:
            return True
    return False


def loads(body: bytes | str) -> Any:
    """The JSON value of ``body``; ``BadRequestError`` (its ``param`` the field, where one
    is at fault) otherwise."""
    raw = bytes(body) if isinstance(body, bytes | bytearray | memoryview) else \
        body.encode("utf-8", "surrogatepass")
    if max(raw.count(b"["), raw.count(b"{")) > MAX_DEPTH and max_depth(raw) > MAX_DEPTH:
        _refuse(f"request body is nested deeper than {MAX_DEPTH} levels")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # refused: the reading below says why, naming the field where it can
    else:
        if _DIGITS_19.search(raw) is None or not _has_huge_number(doc):
            return doc
    return _strict_loads(raw, body if isinstance(body, str) else None)


def _strict_loads(raw: bytes, text: str | None) -> Any:
    if text is None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            _refuse(f"request body is not UTF-8: byte 0x{raw[exc.start]:02x} at offset "
                    f"{exc.start}", hint="send the body as UTF-8")
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        _refuse(f"request body is nested deeper than {MAX_DEPTH} levels")
    except BadRequestError:
        raise
    except ValueError as exc:  # JSONDecodeError, and int() beyond its digit limit
        _refuse(f"request body is not valid JSON: {exc}")
    if _SURROGATE_ESCAPE.search(raw):  # only an escape can make a lone surrogate
        _check_strings(doc)
    return doc


def dumps(doc: Any) -> bytes:
    """Compact JSON of ``doc``; numpy arrays (native byte order) as lists of their numbers.
    NaN and infinities are not JSON: orjson writes ``null`` for them, so a part of ``doc``
    whose floats may hold them goes in as ``verbatim(part)``."""
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def verbatim(value: Any) -> Any:
    """``value`` as ``json.dumps`` writes it (NaN and Infinity as those literals, which
    clients of Python's json read), to be placed in a document for ``dumps``."""
    return orjson.Fragment(json.dumps(value, separators=(",", ":")))
