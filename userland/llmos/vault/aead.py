"""AES-256-GCM, the one adapter around the ``cryptography`` library.

Every encryption in the vault (pack chunks and the wrapped data key) goes through these two
functions, so the rest of the vault is independent of the library.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_SIZE = 32  # AES-256
NONCE_SIZE = 12  # 96-bit GCM nonce
TAG_SIZE = 16  # 128-bit GCM tag, appended to the ciphertext


class AuthenticationFailed(Exception):
    """The tag did not verify: wrong key, or the ciphertext, nonce or associated data changed."""


def encrypt(key: bytes, nonce: bytes, plaintext: bytes | memoryview, aad: bytes) -> bytes:
    """Ciphertext followed by its 16-byte tag."""
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, nonce: bytes, sealed: bytes | bytearray | memoryview, aad: bytes) -> bytes:
    """Plaintext of ``sealed`` (ciphertext + tag), or ``AuthenticationFailed``."""
    try:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise AuthenticationFailed from None


def decrypt_into(key: bytes, nonce: bytes, sealed: bytes | bytearray | memoryview, aad: bytes,
                 out: memoryview) -> None:
    """``decrypt``, writing the plaintext into ``out`` (exactly its size) instead of a new
    buffer. On ``AuthenticationFailed`` ``out`` may hold unverified bytes: wipe it."""
    try:
        AESGCM(key).decrypt_into(nonce, sealed, aad, out)
    except InvalidTag:
        raise AuthenticationFailed from None
