"""The plain pack file: manifest in clear, then the zstd-compressed payload.

Layout (all integers little-endian)::

    magic     8 bytes   b"LLMOSPK\\x01"
    length    u32       length of the manifest JSON
    manifest  JSON      llmos.pack.manifest.Manifest
    payload   zstd      the files, concatenated in manifest order, each starting
                        at a multiple of ALIGN bytes (zero padding between them); one
                        zstd frame, or the bytes as they are where the manifest's
                        ``compression`` is "none" (``choose``)

The payload layout needs no index of its own: offsets follow from the manifest's file
sizes, so a decompressed payload is split into zero-copy ``memoryview`` slices.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, cast

import zstandard

from llmos.errors import PackFormatError
from llmos.pack.manifest import FileEntry, Manifest

MAGIC = b"LLMOSPK\x01"
ALIGN = 64
_LEN = struct.Struct("<I")

Allocator = Callable[[int], memoryview]

# zstd level of new packs. Quantised and float weights hardly compress beyond their entropy
# coding: on the demo models levels 3 and 12 are within 1-3 % of level 1's size (int8: level
# 1 is the smallest), but decompress 1.3x and 1.9x slower (3x under emulation, where it
# is most of a boot's decryption). Measured with zstandard on the four demo packs.
LEVEL = 1

# Compression pays at load time only where it shrinks the payload a lot: zstd decompresses
# at ~0.9 GB/s on the development machines (a third of that under emulation), slower than
# the page cache or an NVMe disk delivers the bytes it saves. MiniLM int8 keeps 82 % of its
# size at level 1, float32 MiniLM 92 % (both stored as they are); SmolLM2 int8 61 %.
MAX_RATIO = 0.7


def _padded(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def layout(files: Iterable[FileEntry]) -> dict[str, tuple[int, int]]:
    """name -> (offset, size) of each file inside the decompressed payload."""
    out: dict[str, tuple[int, int]] = {}
    pos = 0
    for f in files:
        out[f.name] = (pos, f.size)
        pos = _padded(pos + f.size)
    return out


def payload_size(files: Iterable[FileEntry]) -> int:
    end = 0
    for offset, size in layout(files).values():
        end = offset + size
    return end


def build_payload(files: Mapping[str, bytes]) -> tuple[tuple[FileEntry, ...], bytes]:
    """Concatenate files (sorted by name, so packs are reproducible)."""
    entries = tuple(
        FileEntry(name, len(data), hashlib.sha256(data).hexdigest())
        for name, data in sorted(files.items())
    )
    parts: list[bytes] = []
    pos = 0
    for e in entries:
        parts.append(files[e.name])
        pos += e.size
        pad = _padded(pos) - pos
        if pad and e is not entries[-1]:
            parts.append(b"\0" * pad)
            pos += pad
    return entries, b"".join(parts)


def compress(payload: bytes, level: int = LEVEL) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(payload)


def choose(payload: bytes, level: int = LEVEL, max_ratio: float = MAX_RATIO
           ) -> tuple[str, bytes]:
    """(compression, stored bytes): zstd where it keeps at most ``max_ratio`` of the size,
    else the payload as it is ("none")."""
    compressed = compress(payload, level)
    if len(compressed) <= max_ratio * len(payload):
        return "zstd", compressed
    return "none", payload


def encode(manifest: Manifest, compressed: bytes) -> bytes:
    head = manifest.to_json()
    return MAGIC + _LEN.pack(len(head)) + head + compressed


def write_pack(path: Path, manifest: Manifest, compressed: bytes) -> None:
    path.write_bytes(encode(manifest, compressed))


def decode(blob: bytes | memoryview) -> tuple[Manifest, memoryview]:
    """Split a plain pack into its manifest and compressed payload (no copy)."""
    view = memoryview(blob)
    if bytes(view[:8]) != MAGIC:
        raise PackFormatError("not an llmos pack (bad magic)",
                              "pass a file made by 'llmos pack' (a sealed pack needs a key)")
    if len(view) < 12:
        raise PackFormatError("pack is truncated", "copy the pack again")
    (n,) = _LEN.unpack(view[8:12])
    if 12 + n > len(view):
        raise PackFormatError("pack is truncated inside its manifest", "copy the pack again")
    manifest = Manifest.from_json(bytes(view[12:12 + n]))
    return manifest, view[12 + n:]


def read_pack(path: Path) -> tuple[Manifest, memoryview]:
    return decode(path.read_bytes())


def fresh_buffer(n: int) -> memoryview:
    """``n`` zeroed bytes of anonymous, page-aligned memory whose pages the kernel faults in
    at once (``MAP_POPULATE``): the default where no memory pool is given. Opening MiniLM's cached
    42 MB pack took 22.7 ms so, 26.4 ms with its pages faulted one by one as they were
    written (medians of 9 on the 2-core build host)."""
    if n == 0:
        return memoryview(bytearray())
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)
    return memoryview(mmap.mmap(-1, n, flags=flags))


class _Chunks:
    """A read()-able source over an iterable of chunks (zstandard's stream_reader input)."""

    def __init__(self, chunks: Iterable[bytes | memoryview]) -> None:
        self._chunks = iter(chunks)

    def read(self, _size: int = -1) -> bytes | memoryview:
        return next(self._chunks, b"")


def checked_size(manifest: Manifest) -> int:
    """The plaintext payload's size, once the manifest's files and sizes agree on it."""
    size = payload_size(manifest.files)
    if size != manifest.size_plain:
        raise PackFormatError(
            f"manifest says {manifest.size_plain} plaintext bytes, its files add up to {size}",
            "the pack is damaged; repack the model")
    return size


def decompress_into(
    chunks: Iterable[bytes | memoryview], manifest: Manifest, alloc: Allocator = fresh_buffer,
    *, authenticated: bool = False,
) -> memoryview:
    """Stream-decompress the payload into one buffer from ``alloc`` and verify it.

    ``alloc`` decides where plaintext lives (pinned or hugepage memory); nothing is
    written anywhere else. zstd writes straight into that buffer (no intermediate copies,
    no page faults of temporary buffers) and checks the frame's content checksum. A plain
    pack's payload is also checked against the manifest's SHA-256, each piece hashed while
    it is still in the CPU's cache. ``authenticated``: the caller has authenticated every
    compressed byte and the manifest (a sealed pack's AES-GCM chunks), so the SHA-256
    would prove nothing more and is skipped (under emulation it costs seconds per model).
    """
    size = checked_size(manifest)
    out = alloc(size)
    if manifest.compression == "none":
        _copy_into(chunks, out, manifest, authenticated)
        return out
    source = cast("IO[bytes]", _Chunks(chunks))  # stream_reader only calls read()
    reader = zstandard.ZstdDecompressor().stream_reader(source)
    digest = None if authenticated else hashlib.sha256()
    pos = 0
    try:
        while pos < size:
            n = reader.readinto(out[pos:])
            if not n:
                break
            if digest is not None:
                digest.update(out[pos:pos + n])
            pos += n
        larger = bool(reader.read(1))
    except zstandard.ZstdError as exc:
        raise PackFormatError(f"payload does not decompress: {exc}",
                              "the pack is damaged; repack the model") from exc
    if larger:
        raise PackFormatError("payload is larger than its manifest says",
                              "the pack is damaged; repack the model")
    if pos != size:
        raise PackFormatError(f"payload decompressed to {pos} bytes, expected {size}",
                              "the pack is damaged or truncated; copy it again")
    if digest is not None and digest.hexdigest() != manifest.sha256:
        raise PackFormatError("payload sha256 does not match the manifest",
                              "the pack is damaged; repack the model")
    return out


def _copy_into(chunks: Iterable[bytes | memoryview], out: memoryview, manifest: Manifest,
               authenticated: bool) -> None:
    """An uncompressed payload's chunks into ``out``, checked as ``decompress_into`` does."""
    digest = None if authenticated else hashlib.sha256()
    pos = 0
    for chunk in chunks:
        n = len(chunk)
        if pos + n > len(out):
            raise PackFormatError("payload is larger than its manifest says",
                                  "the pack is damaged; repack the model")
        out[pos:pos + n] = chunk
        if digest is not None:
            digest.update(chunk)
        pos += n
    if pos != len(out):
        raise PackFormatError(f"payload has {pos} bytes, expected {len(out)}",
                              "the pack is damaged or truncated; copy it again")
    if digest is not None and digest.hexdigest() != manifest.sha256:
        raise PackFormatError("payload sha256 does not match the manifest",
                              "the pack is damaged; repack the model")


def split_files(manifest: Manifest, payload: memoryview) -> dict[str, memoryview]:
    """Zero-copy views of each file inside a decompressed payload."""
    return {name: payload[off:off + size] for name, (off, size) in layout(manifest.files).items()}
