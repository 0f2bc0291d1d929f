"""The fleet key (key-encryption key, KEK) and its serialised form (pure but for ``secrets``).

The KEK wraps each pack's data key. Its serialised form, used by key files, by systemd
credentials and inside the TPM-sealed blob alike, is 64 lowercase hex digits and a newline;
32 raw bytes are accepted too (e.g. ``head -c 32 /dev/urandom`` made into a credential).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from llmos.errors import KeyReleaseError

KEK_SIZE = 32
_ID_LABEL = b"llmos-kek-id\x00"


@dataclass(frozen=True)
class Kek:
    """A 256-bit key-encryption key. ``id`` is its public fingerprint; ``repr`` hides the key."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEK_SIZE:
            raise ValueError(f"a fleet key is {KEK_SIZE} bytes, got {len(self.key)}")

    @property
    def id(self) -> str:
        """First 8 bytes of SHA-256(label + key), as 16 hex digits: safe to print and store."""
        return hashlib.sha256(_ID_LABEL + self.key).digest()[:8].hex()

    def __repr__(self) -> str:
        return f"Kek(id={self.id})"


def generate_kek() -> Kek:
    return Kek(secrets.token_bytes(KEK_SIZE))


def encode_kek(kek: Kek) -> bytes:
    return kek.key.hex().encode() + b"\n"


def decode_kek(raw: bytes, origin: str) -> Kek:
    """Parse a serialised KEK; ``origin`` names where it came from, for the error."""
    if len(raw) == KEK_SIZE:
        return Kek(bytes(raw))
    text = raw.strip()
    try:
        if len(text) != 2 * KEK_SIZE:
            raise ValueError(f"{len(raw)} bytes")
        return Kek(bytes.fromhex(text.decode("ascii")))
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyReleaseError(
            f"{origin} does not hold a fleet key ({exc})",
            f"a fleet key is {2 * KEK_SIZE} hex digits or {KEK_SIZE} raw bytes; "
            "make one with 'llmos keygen'") from None
