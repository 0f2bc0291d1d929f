"""Slow password hashes: scrypt (RFC 7914, ``hashlib.scrypt``), no extra dependency.

Stored as one line, ``scrypt$ln=15,r=8,p=1$<salt>$<key>`` (unpadded base64), so the
parameters travel with the hash and can be raised later without breaking old hashes.
Defaults: N = 2^15, r = 8, p = 1 (32 MiB, about 0.1 s per check on one core), a 16-byte
random salt and a 32-byte derived key. Only the hash is ever stored; never the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from llmos.errors import ConfigError

SCHEME = "scrypt"
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_BYTES = 1024  # scrypt takes any length; a cap keeps a login request cheap


@dataclass(frozen=True)
class ScryptParams:
    log2_n: int = 15
    r: int = 8
    p: int = 1

    @property
    def maxmem(self) -> int:
        """Memory scrypt needs (128 * r * N), with room for its bookkeeping."""
        return 2 * 128 * self.r * (1 << self.log2_n) + (1 << 20)


DEFAULT_PARAMS = ScryptParams()


@dataclass(frozen=True)
class PasswordHash:
    params: ScryptParams
    salt: bytes
    key: bytes

    def encode(self) -> str:
        p = self.params
        return (f"{SCHEME}$ln={p.log2_n},r={p.r},p={p.p}"
                f"${_b64(self.salt)}${_b64(self.key)}")

    @classmethod
    def decode(cls, text: str) -> PasswordHash:
        parts = text.strip().split("$")
        if len(parts) != 4 or parts[0] != SCHEME:
            raise ConfigError("the admin password file is not a scrypt hash",
                              "set the password again: llmos admin set-password")
        try:
            fields = dict(kv.split("=", 1) for kv in parts[1].split(","))
            params = ScryptParams(int(fields["ln"]), int(fields["r"]), int(fields["p"]))
            salt, key = _unb64(parts[2]), _unb64(parts[3])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"the admin password hash is malformed: {exc}",
                              "set the password again: llmos admin set-password") from exc
        if not (1 <= params.log2_n <= 24 and params.r >= 1 and params.p >= 1 and salt and key):
            raise ConfigError("the admin password hash has out-of-range parameters",
                              "set the password again: llmos admin set-password")
        return cls(params, salt, key)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _derive(password: str, salt: bytes, params: ScryptParams, length: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=1 << params.log2_n, r=params.r,
                          p=params.p, maxmem=params.maxmem, dklen=length)


def check_new_password(password: str) -> None:
    """Refuse passwords too short or too long to be set (ConfigError with a hint)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ConfigError(f"the admin password must have at least {MIN_PASSWORD_CHARS} "
                          "characters", "choose a longer password")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ConfigError(f"the admin password must be at most {MAX_PASSWORD_BYTES} bytes",
                          "choose a shorter password")


def hash_password(password: str, params: ScryptParams = DEFAULT_PARAMS,
                  salt: bytes | None = None) -> PasswordHash:
    """A new hash of ``password`` with a fresh random salt (slow on purpose)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    return PasswordHash(params, salt, _derive(password, salt, params, KEY_BYTES))


def verify_password(stored: PasswordHash, password: str) -> bool:
    """Whether ``password`` matches; constant-time comparison, bounded input size."""
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    candidate = _derive(password, stored.salt, stored.params, len(stored.key))
    return hmac.compare_digest(candidate, stored.key)


def generate_password(nbytes: int = 15) -> str:
    """A random password for demo mode (URL-safe, 20 characters for 15 bytes)."""
    return secrets.token_urlsafe(nbytes)
