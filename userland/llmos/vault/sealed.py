"""Seal a pack, and open a sealed pack: authenticate, decrypt and decompress in memory.

Sealing draws a fresh 256-bit data key and pack id, wraps the data key with the fleet key
(AES-256-GCM, the header as associated data) and encrypts the compressed payload chunk by
chunk (the format is in ``llmos.vault.format``). Opening checks, in this order and before any
chunk is decrypted: the fleet key's fingerprint (``WrongKeyError`` naming both), the header
(the key wrap fails if any header byte changed: ``TamperedError``) and the length (a cut or
extended file: ``TamperedError``). Each chunk is then verified before it is handed on;
``open_payload`` feeds the verified chunks straight into the decompressor, and wipes the
buffer if anything fails, so a bad pack never reaches a runtime and plaintext never
touches the disk.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from llmos.errors import LlmosError, PackFormatError, TamperedError, WrongKeyError
from llmos.files import atomic_write
from llmos.pack import container
from llmos.pack.manifest import Manifest
from llmos.vault import aead
from llmos.vault import format as fmt
from llmos.vault.direct_read import DirectReader
from llmos.vault.kek import Kek

if TYPE_CHECKING:
    from llmos.hw.memory import MemoryPool

DEFAULT_CHUNK_SIZE = 1 << 20
# Chunks are independent AES-GCM messages, so ``decrypt_into`` opens contiguous spans of
# them on several threads (cryptography releases the GIL). Spans of fewer chunks are not
# worth a thread. At most four: AES-GCM runs at 4-9 GB/s a thread here, so more would
# wait on the disk and memory (only measured on two cores: two threads against one,
# SmolLM2's pack cached 85 against 95 ms; four there were slower than two).
MAX_WORKERS = 4
MIN_SPAN_CHUNKS = 4
TAMPERED_HINT = ("the sealed pack was modified, truncated or mixed with another after sealing; "
                 "copy the original sealed pack again, or seal the pack again")

Allocator = Callable[[int], memoryview]
T = TypeVar("T")


# ---------------------------------------------------------------------------------- sealing

def _sealed_parts(manifest: Manifest, compressed: bytes | memoryview, kek: Kek,
                  chunk_size: int) -> Iterator[bytes]:
    """The sealed file as a stream of parts: the header, then one part per chunk."""
    if not 0 < chunk_size <= fmt.MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in 1..{fmt.MAX_CHUNK_SIZE}, got {chunk_size}")
    payload = memoryview(compressed).cast("B")
    manifest.validate()
    if manifest.size_packed != len(payload):
        raise PackFormatError(
            f"manifest of {manifest.name!r} says {manifest.size_packed} compressed bytes, "
            f"the payload has {len(payload)}", "the pack is damaged; pack the model again")
    data_key = secrets.token_bytes(aead.KEY_SIZE)
    draft = fmt.Header(chunk_size=chunk_size, payload_size=len(payload),
                       pack_id=secrets.token_bytes(fmt.PACK_ID_SIZE),
                       kek_id=bytes.fromhex(kek.id), manifest=manifest.to_json(),
                       wrap_nonce=secrets.token_bytes(aead.NONCE_SIZE), wrapped_key=b"")
    header = replace(draft, wrapped_key=aead.encrypt(kek.key, draft.wrap_nonce, data_key,
                                                     fmt.wrap_aad(draft)))
    yield header.encode()
    digest = fmt.header_digest(header)
    last = header.chunk_count - 1
    for i in range(header.chunk_count):
        piece = payload[i * chunk_size:(i + 1) * chunk_size]
        yield aead.encrypt(data_key, fmt.chunk_nonce(i, i == last), piece,
                           fmt.chunk_aad(digest, i, i == last))


def seal(manifest: Manifest, compressed: bytes | memoryview, kek: Kek,
         chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    """A sealed pack (bytes) of ``compressed``, the pack's zstd payload, for fleet key ``kek``."""
    return b"".join(_sealed_parts(manifest, compressed, kek, chunk_size))


def seal_pack_file(pack: Path, out: Path, kek: Kek) -> Manifest:
    """Seal the plain pack file ``pack`` into ``out`` (replaced atomically)."""
    try:
        blob = pack.read_bytes()
    except OSError as exc:
        raise LlmosError(f"cannot read pack {pack}: {exc.strerror}",
                         "pass a pack made by 'llmos pack'") from exc
    if fmt.is_sealed(blob):
        raise PackFormatError(f"{pack} is already sealed", "seal the plain pack instead")
    manifest, compressed = container.decode(blob)
    atomic_write(out, _sealed_parts(manifest, compressed, kek, DEFAULT_CHUNK_SIZE))
    return manifest


# ---------------------------------------------------------------------------------- opening

class _Body(Protocol):
    """The sealed chunks that follow the header, wherever they are."""

    def size(self) -> int: ...

    def read(self, lengths: Iterable[int], start: int = 0
             ) -> Iterator[bytes | bytearray | memoryview]:
        """Pieces of these lengths from byte ``start`` of the body on (shorter ones at its
        end); each piece is valid until the next one is read."""


@dataclass(frozen=True)
class _MemoryBody:
    view: memoryview

    def size(self) -> int:
        return len(self.view)

    def read(self, lengths: Iterable[int], start: int = 0) -> Iterator[memoryview]:
        pos = start
        for n in lengths:
            yield self.view[pos:pos + n]
            pos += n


@dataclass(frozen=True)
class _FileBody:
    path: Path
    offset: int

    def size(self) -> int:
        return self.path.stat().st_size - self.offset

    def read(self, lengths: Iterable[int], start: int = 0) -> Iterator[memoryview]:
        """Past the page cache where the file system allows (read once, never again), into
        one buffer reused for every piece (no fresh pages per chunk)."""
        scratch = memoryview(bytearray())
        with DirectReader(self.path, self.offset + start) as reader:
            for n in lengths:
                if len(scratch) < n:
                    scratch = memoryview(bytearray(n))
                yield scratch[:reader.readinto(scratch[:n])]


@dataclass(frozen=True)
class SealedPack:
    """A sealed pack whose header has been parsed (not yet authenticated: that needs the key)."""

    header: fmt.Header
    manifest: Manifest
    origin: str  # the file, or "<bytes>", for messages
    _body: _Body

    @property
    def kek_id(self) -> str:
        return self.header.kek_id.hex()

    @property
    def pack_id(self) -> str:
        return self.header.pack_id.hex()

    @classmethod
    def from_bytes(cls, blob: bytes | memoryview) -> SealedPack:
        view = memoryview(blob).cast("B")
        header = fmt.decode_header(view)
        return cls(header, Manifest.from_json(header.manifest), "<bytes>",
                   _MemoryBody(view[header.size:]))

    @classmethod
    def open(cls, path: Path) -> SealedPack:
        """Read the header only; the chunks are read from the file as they are decrypted."""
        try:
            with path.open("rb") as f:
                prefix = f.read(fmt.FIXED_SIZE)
                n = fmt.manifest_length(prefix)
                head = prefix + f.read(fmt.header_size(n) - len(prefix))
        except OSError as exc:
            raise LlmosError(f"cannot read sealed pack {path}: {exc.strerror}",
                             "check the path (models.pack, server.packs_dir)") from exc
        header = fmt.decode_header(head)
        return cls(header, Manifest.from_json(header.manifest), str(path),
                   _FileBody(path, header.size))

    def _label(self) -> str:
        return f"sealed pack {self.origin} ({self.manifest.name!r}, pack id {self.pack_id})"

    def _data_key(self, kek: Kek) -> bytes:
        if kek.id != self.kek_id:
            raise WrongKeyError(
                f"{self._label()} was sealed for fleet key {self.kek_id}, but the key "
                f"available here is {kek.id}",
                f"give this machine fleet key {self.kek_id}, or seal the pack again with "
                f"key {kek.id}")
        h = self.header
        try:
            return aead.decrypt(kek.key, h.wrap_nonce, h.wrapped_key, fmt.wrap_aad(h))
        except aead.AuthenticationFailed:
            raise TamperedError(f"{self._label()}: the header does not authenticate (its "
                                "manifest, sizes, ids or wrapped key were edited)",
                                TAMPERED_HINT) from None

    def _check_length(self) -> None:
        expected, actual = self.header.body_size, self._body.size()
        if actual != expected:
            what = "truncated" if actual < expected else "extended"
            raise TamperedError(f"{self._label()} is {what}: {actual} bytes of chunks after "
                                f"the header, {expected} sealed", TAMPERED_HINT)

    def chunks(self, kek: Kek) -> Iterator[memoryview]:
        """Verified plaintext chunks of the compressed payload, in order.

        The key, the header and the length are checked now; each chunk as it is reached.
        """
        data_key = self._data_key(kek)
        self._check_length()
        return self._decrypt(data_key)

    def decrypt_into(self, kek: Kek, out: memoryview, workers: int | None = None) -> None:
        """Every chunk verified and decrypted straight into ``out`` (the payload's size):
        an uncompressed payload needs no other buffer. Spans of chunks are opened on up to
        ``workers`` threads (default: the CPUs this process may use, at most
        ``MAX_WORKERS``). Checks as ``chunks`` does; on an error the first failing span's
        is raised once every thread has stopped (the others stop at their next chunk), and
        ``out`` may hold unverified bytes (the caller wipes it)."""
        data_key = self._data_key(kek)
        self._check_length()
        if len(out) != self.header.payload_size:
            raise TamperedError(f"{self._label()}: {self.header.payload_size} bytes sealed, "
                                f"{len(out)} expected", TAMPERED_HINT)
        digest = fmt.header_digest(self.header)
        size = self.header.chunk_size
        failed = threading.Event()

        def open_span(span: range) -> None:
            try:
                for i, final, piece in self._pieces(span):
                    if failed.is_set():
                        return
                    n = len(piece) - aead.TAG_SIZE
                    self._open(aead.decrypt_into, data_key, digest, (i, final), piece,
                               out[i * size:i * size + n])
            except BaseException:
                failed.set()
                raise

        first, *rest = spans(self.header.chunk_count, workers)
        if not rest:
            open_span(first)
            return
        # Leaving the block waits for every thread, so an error of the first span is
        # raised only once the others have stopped writing into ``out``.
        with ThreadPoolExecutor(len(rest), thread_name_prefix="llmos-decrypt") as pool:
            others = [pool.submit(open_span, span) for span in rest]
            open_span(first)
        for future in others:
            future.result()

    def _pieces(self, span: range | None = None
                ) -> Iterator[tuple[int, bool, bytes | bytearray | memoryview]]:
        """(index, final, ciphertext + tag) of each chunk of ``span`` (default: all), its
        length checked; each piece is valid until the next one is taken."""
        lengths = self.header.chunk_lengths()
        last = len(lengths) - 1
        if span is None:
            span = range(len(lengths))
        start = span.start * (self.header.chunk_size + aead.TAG_SIZE)  # all but the last full
        sealed = self._body.read((lengths[i] + aead.TAG_SIZE for i in span), start)
        for i, piece in zip(span, sealed, strict=False):
            if len(piece) != lengths[i] + aead.TAG_SIZE:
                raise TamperedError(f"{self._label()} ends inside chunk {i} of {last + 1}",
                                    TAMPERED_HINT)
            yield i, i == last, piece

    def _open(self, how: Callable[..., T], data_key: bytes, digest: bytes,
              where: tuple[int, bool], piece: bytes | bytearray | memoryview,
              *out: memoryview) -> T:
        i, final = where
        try:
            return how(data_key, fmt.chunk_nonce(i, final), piece,
                       fmt.chunk_aad(digest, i, final), *out)
        except aead.AuthenticationFailed:
            raise TamperedError(
                f"{self._label()}: chunk {i} of {self.header.chunk_count} does not "
                "authenticate (edited, reordered, or taken from another pack)",
                TAMPERED_HINT) from None

    def _decrypt(self, data_key: bytes) -> Iterator[memoryview]:
        digest = fmt.header_digest(self.header)
        for i, final, piece in self._pieces():
            yield memoryview(self._open(aead.decrypt, data_key, digest, (i, final), piece))


def spans(chunk_count: int, workers: int | None = None) -> list[range]:
    """Contiguous, nearly equal spans of chunk indices, one per thread: at most ``workers``
    of them (default: the CPUs this process may use, at most ``MAX_WORKERS``), each of at
    least ``MIN_SPAN_CHUNKS`` chunks (one span for a small pack)."""
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)), MAX_WORKERS)
    k = max(1, min(workers, chunk_count // MIN_SPAN_CHUNKS))
    cuts = [chunk_count * j // k for j in range(k + 1)]
    return [range(cuts[j], cuts[j + 1]) for j in range(k)]


def _wipe(buf: memoryview) -> None:
    flat = buf.cast("B")
    step = 1 << 20
    zeros = bytes(step)
    for pos in range(0, len(flat), step):
        end = min(pos + step, len(flat))
        flat[pos:end] = zeros[:end - pos]


def open_payload(sealed: SealedPack, kek: Kek,
                 alloc: Allocator = container.fresh_buffer) -> memoryview:
    """The decompressed, verified payload in one buffer from ``alloc`` (pinned memory, say);
    an uncompressed one is decrypted straight into it.

    Every chunk and the manifest are authenticated (AES-GCM) as they are decrypted, and
    zstd checks its content checksum: the plaintext SHA-256 is not recomputed. On any
    failure the buffer is zeroed before the error propagates.
    """
    buffers: list[memoryview] = []

    def tracked(n: int) -> memoryview:
        buffers.append(alloc(n))
        return buffers[-1]

    try:
        if sealed.manifest.compression == "none":  # decrypted where it will stay
            out = tracked(container.checked_size(sealed.manifest))
            sealed.decrypt_into(kek, out)
            return out
        return container.decompress_into(sealed.chunks(kek), sealed.manifest, tracked,
                                         authenticated=True)
    except BaseException:
        for buf in buffers:
            _wipe(buf)
        raise


def open_into(sealed: SealedPack, kek: Kek, memory: MemoryPool | None,
              owner: str) -> memoryview:
    """``open_payload`` into ``owner``'s buffers of ``memory`` (pinned or hugepage memory),
    or into fresh process memory without a pool."""
    return open_payload(sealed, kek,
                        container.fresh_buffer if memory is None else memory.allocator(owner))


def read_manifest(path: Path) -> Manifest:
    """The manifest of a plain or a sealed pack, without any key (for ``llmos inspect``).

    For a sealed pack it is not authenticated until the pack is opened with its key.
    """
    try:
        with path.open("rb") as f:
            magic = f.read(len(fmt.MAGIC))
            if fmt.is_sealed(magic):
                return SealedPack.open(path).manifest
            head = magic + f.read(4)
            n = int.from_bytes(head[len(container.MAGIC):], "little")
            manifest, _ = container.decode(head + f.read(n))
            return manifest
    except OSError as exc:
        raise LlmosError(f"cannot read {path}: {exc.strerror}", "check the path") from exc
