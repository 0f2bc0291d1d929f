"""The request file the admin page drops and the update agent reads (pure, plus ``submit``).

Two requests exist, as JSON objects::

    {"action": "update", "source": "https://host[:port]/path/"}   # or an absolute local dir
    {"action": "reboot"}

An update's source is an ``http://`` or ``https://`` URL with a host, an optional port and a
path (no credentials, spaces, quotes or control characters; normalised to end with ``/``:
sysupdate's ``url-file`` source), or an absolute path of a local directory that exists
(``regular-file``: a USB stick or the ESP). Anything else is refused with the field named.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmos.errors import BadRequestError, ConflictError
from llmos.files import atomic_write

URL_SOURCE = "url-file"
DIR_SOURCE = "regular-file"
ACTIONS = ("update", "reboot")
MAX_SOURCE_CHARS = 1024
_URL = re.compile(
    r"(?i:(?P<scheme>https?))://"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>\d{1,5}))?"
    r"(?P<path>/[A-Za-z0-9._~/%+,;=:!*()-]*)?")
_FORBIDDEN = re.compile(r"[\s\"'`\\<>{}|^@$#?&]")


@dataclass(frozen=True)
class Source:
    type: str  # URL_SOURCE or DIR_SOURCE (sysupdate's Source.Type=)
    path: str  # the normalised URL (ending in "/") or directory


@dataclass(frozen=True)
class Request:
    action: str  # "update" or "reboot"
    source: Source | None = None  # an update's

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"action": self.action}
        if self.source is not None:
            doc["source"] = self.source.path
        return json.dumps(doc).encode() + b"\n"


def _bad(message: str, param: str = "source") -> BadRequestError:
    hint = ("give an http:// or https:// URL of the directory holding the update "
            "(host, optional port, path), or an absolute path of a local directory")
    return BadRequestError(message, hint if param == "source" else
                           f"send one of {', '.join(ACTIONS)}", param=param)


def parse_source(raw: object, is_dir: Callable[[str], bool]) -> Source:
    """The update source ``raw``, validated and normalised (``is_dir`` checks a path)."""
    if not isinstance(raw, str) or not raw.strip():
        raise _bad("source is missing or not a string")
    text = raw.strip()
    if len(text) > MAX_SOURCE_CHARS:
        raise _bad(f"source is longer than {MAX_SOURCE_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise _bad("source has control characters")
    if text.lower().startswith(("http://", "https://")):
        m = _URL.fullmatch(text)
        if m is None or _FORBIDDEN.search(text.split("://", 1)[1]):
            raise _bad(f"source {text!r} is not a plain http(s) URL (no credentials, "
                       "query, spaces or quotes)")
        port = m.group("port")
        if port is not None and not 0 < int(port) < 65536:
            raise _bad(f"source {text!r} has no valid port")
        path = m.group("path") or "/"
        url = f"{m.group('scheme').lower()}://{m.group('host')}"
        url += f":{port}" if port else ""
        return Source(URL_SOURCE, url + (path if path.endswith("/") else path + "/"))
    if "://" in text:
        raise _bad(f"source {text!r}: only http:// and https:// URLs are supported")
    if not text.startswith("/") or _FORBIDDEN.search(text) or "/../" in f"{text}/":
        raise _bad(f"source {text!r} is neither an http(s) URL nor an absolute directory")
    if not is_dir(text):
        raise _bad(f"source {text!r} is not an existing directory")
    return Source(DIR_SOURCE, os.path.normpath(text))


def parse_request(doc: object, is_dir: Callable[[str], bool]) -> Request:
    """A request object (the file's JSON, or an admin form) as a ``Request``."""
    if not isinstance(doc, Mapping):
        raise _bad("the request is not a JSON object", "action")
    action = doc.get("action")
    if action == "reboot":
        return Request("reboot")
    if action == "update":
        return Request("update", parse_source(doc.get("source"), is_dir))
    raise _bad(f"action {action!r} is not one of {', '.join(ACTIONS)}", "action")


def parse_request_bytes(raw: bytes, is_dir: Callable[[str], bool]) -> Request:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"the request is not JSON: {exc}", "action") from exc
    return parse_request(doc, is_dir)


def submit(path: Path, request: Request) -> None:
    """Write ``request`` to ``path`` atomically (a temporary file in the same folder, made
    0700, then linked into place: never a partial file, and never over a pending request,
    which the agent deletes when it takes it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        raise _pending()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    atomic_write(tmp, [request.to_json()], mode=0o600)
    try:
        os.link(tmp, path)  # unlike rename, refuses to replace a request that raced us
    except FileExistsError as exc:
        raise _pending() from exc
    finally:
        tmp.unlink(missing_ok=True)


def _pending() -> ConflictError:
    return ConflictError("an OS update request is already pending",
                         "wait until the update agent has taken it (see the status)")
