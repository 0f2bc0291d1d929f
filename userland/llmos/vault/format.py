"""The sealed pack file format (pure: bytes in, bytes out, no I/O, no cryptography).

A sealed pack is the plain pack's manifest in clear, a wrapped data key, and the pack's
*compressed* payload cut into fixed-size chunks, each encrypted and authenticated on its own
with AES-256-GCM. All integers are little-endian except inside nonces and associated data
(big-endian, as is usual for counters there).

=========  ====  ===============  ==========================================================
offset     size  field            meaning
=========  ====  ===============  ==========================================================
0          8     magic            ``b"LLMOSSL\\x01"`` (a plain pack starts ``b"LLMOSPK\\x01"``)
8          2     version (u16)    format version, 1
10         2     suite (u16)      1 = AES-256-GCM chunks, data key wrapped with AES-256-GCM
12         4     chunk_size (u32) plaintext bytes per chunk; the last chunk may be shorter
16         8     payload_size     bytes of the compressed payload (u64); the plaintext total
24         16    pack_id          random; names this sealing (two seals of one pack differ)
40         8     kek_id           fingerprint of the fleet key (KEK) that wraps the data key
48         4     manifest_len     length *n* of the manifest (u32)
52         n     manifest         ``llmos.pack.manifest.Manifest`` as JSON, in clear
52+n       12    wrap_nonce       random nonce of the key wrap
64+n       48    wrapped_key      AES-256-GCM(KEK, wrap_nonce, data key 32 B) + 16 B tag;
                                  associated data: ``WRAP_LABEL`` + bytes [0, 52+n)
112+n      ...   chunks           chunk_count x (ciphertext + 16-byte tag), nothing after
=========  ====  ===============  ==========================================================

``chunk_count = max(1, ceil(payload_size / chunk_size))``: an empty payload is one empty
chunk, so even it carries a tag. Chunk *i* of *N* is sealed with the pack's own data key,

- nonce (12 B) = *i* (u64 BE) + final (u8: 1 on chunk *N*-1, else 0) + three zero bytes,
- associated data = ``CHUNK_LABEL`` + SHA-256(header bytes [0, 112+n)) + *i* (u64 BE) + final.

What that buys: the data key is fresh for every pack, so a (key, nonce) pair never repeats;
the key wrap authenticates every header field (an edited manifest, size or id fails to
unwrap); each chunk is bound to this exact header (a chunk from another pack fails even if
its key were the same), to its position (reordered or swapped chunks fail) and to being last
or not (a cut at a chunk boundary fails even before the length check catches it).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from llmos.errors import PackFormatError
from llmos.vault.aead import KEY_SIZE, NONCE_SIZE, TAG_SIZE

MAGIC = b"LLMOSSL\x01"
VERSION = 1
SUITE_AES256GCM = 1
PACK_ID_SIZE = 16
KEK_ID_SIZE = 8
MAX_CHUNK_SIZE = 1 << 28
MAX_MANIFEST = 16 << 20
WRAP_LABEL = b"llmos-sealed/v1/wrap\x00"
CHUNK_LABEL = b"llmos-sealed/v1/chunk\x00"

_FIXED = struct.Struct("<8sHHIQ16s8sI")
_WRAP = struct.Struct(f"<{NONCE_SIZE}s{KEY_SIZE + TAG_SIZE}s")
_POSITION = struct.Struct(">QB")
FIXED_SIZE = _FIXED.size  # 52: everything before the manifest
WRAP_SIZE = _WRAP.size  # 60: everything after it


def chunk_count(payload_size: int, chunk_size: int) -> int:
    return max(1, -(-payload_size // chunk_size))


@dataclass(frozen=True)
class Header:
    """Everything before the first chunk. ``encode()`` gives back the exact bytes."""

    chunk_size: int
    payload_size: int
    pack_id: bytes
    kek_id: bytes
    manifest: bytes  # the JSON exactly as stored
    wrap_nonce: bytes
    wrapped_key: bytes

    def core(self) -> bytes:
        """Bytes [0, 52+n): what the key wrap authenticates."""
        return _FIXED.pack(MAGIC, VERSION, SUITE_AES256GCM, self.chunk_size, self.payload_size,
                           self.pack_id, self.kek_id, len(self.manifest)) + self.manifest

    def encode(self) -> bytes:
        return self.core() + _WRAP.pack(self.wrap_nonce, self.wrapped_key)

    @property
    def size(self) -> int:
        return FIXED_SIZE + len(self.manifest) + WRAP_SIZE

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.payload_size, self.chunk_size)

    @property
    def body_size(self) -> int:
        """Bytes of all sealed chunks together."""
        return self.payload_size + self.chunk_count * TAG_SIZE

    def chunk_lengths(self) -> list[int]:
        """Plaintext length of each chunk."""
        n = self.chunk_count
        return [min(self.chunk_size, self.payload_size - i * self.chunk_size) for i in range(n)]


def wrap_aad(header: Header) -> bytes:
    return WRAP_LABEL + header.core()


def chunk_nonce(index: int, final: bool) -> bytes:
    return _POSITION.pack(index, final) + bytes(NONCE_SIZE - _POSITION.size)


def chunk_aad(header_digest: bytes, index: int, final: bool) -> bytes:
    return CHUNK_LABEL + header_digest + _POSITION.pack(index, final)


def header_digest(header: Header) -> bytes:
    return hashlib.sha256(header.encode()).digest()


def is_sealed(prefix: bytes) -> bool:
    return prefix[:len(MAGIC)] == MAGIC


def manifest_length(prefix: bytes | bytearray | memoryview) -> int:
    """Check the fixed part (the first ``FIXED_SIZE`` bytes) and return the manifest length."""
    if len(prefix) < FIXED_SIZE:
        raise PackFormatError("sealed pack is truncated inside its header", "copy the pack again")
    magic, version, suite, chunk_size, _, _, _, n = _FIXED.unpack(prefix[:FIXED_SIZE])
    if magic != MAGIC:
        raise PackFormatError("not a sealed llmos pack (bad magic)",
                              "pass a file made by 'llmos seal'")
    if version != VERSION or suite != SUITE_AES256GCM:
        raise PackFormatError(
            f"sealed pack format {version} (suite {suite}) is not supported; this build reads "
            f"format {VERSION} (suite {SUITE_AES256GCM})",
            "seal the pack again with this version of llmos")
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise PackFormatError(f"sealed pack has an invalid chunk size {chunk_size}",
                              "the pack is damaged; copy it again")
    if n > MAX_MANIFEST:
        raise PackFormatError(f"sealed pack claims a {n}-byte manifest",
                              "the pack is damaged; copy it again")
    return int(n)


def header_size(manifest_len: int) -> int:
    return FIXED_SIZE + manifest_len + WRAP_SIZE


def decode_header(buf: bytes | bytearray | memoryview) -> Header:
    """Parse the header at the start of ``buf`` (which may go on with the chunks)."""
    n = manifest_length(buf)
    end = header_size(n)
    if len(buf) < end:
        raise PackFormatError("sealed pack is truncated inside its header", "copy the pack again")
    _, _, _, chunk_size, payload_size, pack_id, kek_id, _ = _FIXED.unpack(buf[:FIXED_SIZE])
    wrap_nonce, wrapped_key = _WRAP.unpack(buf[FIXED_SIZE + n:end])
    return Header(chunk_size=chunk_size, payload_size=payload_size, pack_id=pack_id,
                  kek_id=kek_id, manifest=bytes(buf[FIXED_SIZE:FIXED_SIZE + n]),
                  wrap_nonce=wrap_nonce, wrapped_key=wrapped_key)
