"""API keys for the inference API: the key store (pure) and where its lines come from.

A key file holds one key per line, ``NAME: KEY`` or ``NAME: sha256:HEX`` (the key's SHA-256,
so the file need not hold the key itself); blank lines and ``#`` comments are ignored.
Keys are kept as SHA-256 digests only. ``KeyStore.check`` compares the presented key's
digest with every stored digest by ``hmac.compare_digest`` and never stops early, so its
time does not depend on which key matched or how much of one.

Sources (both optional, merged; a name may appear once): the systemd credential
``llmos-api-keys`` ($CREDENTIALS_DIRECTORY, the appliance) and the file of
``server.api_keys_file`` (a host).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from llmos.credentials import credential
from llmos.errors import ConfigError

CREDENTIAL = "llmos-api-keys"
MIN_KEY_CHARS = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HASHED = re.compile(r"sha256:([0-9a-fA-F]{64})")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ApiKey:
    name: str  # shown in /metrics and logs; never the key
    sha256: bytes


@dataclass(frozen=True)
class KeyStore:
    keys: tuple[ApiKey, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)

    def check(self, presented: str) -> str | None:
        """The name of the key ``presented`` is, or None. Constant time in which key matched."""
        wanted = digest(presented)
        found: str | None = None
        for key in self.keys:  # no early exit: every digest is compared
            if hmac.compare_digest(wanted, key.sha256):
                found = key.name
        return found


def parse_line(line: str, origin: str) -> tuple[ApiKey, str | None] | None:
    """One line of a key file: its ApiKey and the key in clear (None for a ``sha256:``
    line); None for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    name, sep, secret = (part.strip() for part in text.partition(":"))
    if not sep or not _NAME.fullmatch(name):
        raise ConfigError(f"{origin}: a line is not 'NAME: KEY'",
                          "a name is 1-64 letters, digits, '_', '.', '-'; run "
                          "'llmos fleet keygen NAME' for a line to copy")
    if m := _HASHED.fullmatch(secret):
        return ApiKey(name, bytes.fromhex(m.group(1))), None
    if len(secret) < MIN_KEY_CHARS or any(c.isspace() for c in secret):
        raise ConfigError(f"{origin}: the key of {name!r} is shorter than {MIN_KEY_CHARS} "
                          "characters or has spaces",
                          "use 'llmos fleet keygen NAME' for a random key")
    return ApiKey(name, digest(secret)), secret


def parse(text: str, origin: str) -> tuple[ApiKey, ...]:
    return tuple(e[0] for line in text.splitlines() if (e := parse_line(line, origin)))


def merge(groups: Iterable[tuple[ApiKey, ...]]) -> KeyStore:
    keys: list[ApiKey] = []
    for group in groups:
        keys.extend(group)
    names = [k.name for k in keys]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"API key names must be unique; repeated: {dupes}",
                          "give each key its own name (it labels the /metrics counters)")
    return KeyStore(tuple(keys))


def generate() -> str:
    """A fresh key: 32 random bytes, URL-safe base64 (43 characters), prefixed ``llmos-``."""
    return "llmos-" + secrets.token_urlsafe(32)


def key_line(name: str, key: str, *, hashed: bool = False) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a valid key name",
                          "1-64 letters, digits, '_', '.', '-'")
    return f"{name}: sha256:{digest(key).hex()}" if hashed else f"{name}: {key}"


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the API keys {what} {path}: {exc.strerror}",
                          "check the path and its permissions") from exc


def _texts(keys_file: Path | None, environ: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(text, origin) of the credential (if systemd passed one), then of ``keys_file`` (if
    set), each read when reached."""
    given = credential(environ, CREDENTIAL)
    if given is not None:
        yield _read(given, "credential"), f"credential {CREDENTIAL}"
    if keys_file is not None:
        yield _read(keys_file, "file"), str(keys_file)


def load(keys_file: Path | None, environ: Mapping[str, str]) -> KeyStore:
    """The keys of the credential (if systemd passed one) and of ``keys_file`` (if set)."""
    return merge(parse(text, origin) for text, origin in _texts(keys_file, environ))


def plain_key(keys_file: Path | None, environ: Mapping[str, str]) -> tuple[bool, str | None]:
    """For a client on the appliance itself (the health gate): whether keys are required,
    and the first key held in clear (a ``NAME: KEY`` line) by the credential or the file,
    None when every key is stored as a digest."""
    texts = list(_texts(keys_file, environ))  # both read: one that cannot be is an error
    required = False
    for text, origin in texts:
        for line in text.splitlines():
            if (entry := parse_line(line, origin)) is None:
                continue
            required = True
            if entry[1] is not None:
                return True, entry[1]
    return required, None
