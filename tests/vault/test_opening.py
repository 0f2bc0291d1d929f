"""Decrypting an uncompressed sealed pack on several threads: spans of chunks, the same
payload whatever the number of threads, and failures that stop every thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llmos.errors import TamperedError
from llmos.pack import container
from llmos.vault import aead
from llmos.vault import format as fmt
from llmos.vault.keys import Kek
from llmos.vault.sealed import MIN_SPAN_CHUNKS, SealedPack, open_payload, seal, spans

from .packs import Pack, make_pack

CHUNK = 256
GRAPH = b"graph " * 40  # 240 bytes: chunk 0 (files are in name order)
WEIGHTS = bytes(range(256)) * 40  # 10240 bytes: chunks 0..40


@pytest.fixture
def plain_pack() -> Pack:
    return make_pack({"model.onnx": GRAPH, "weights.bin": WEIGHTS}, compression="none")


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("llmos-decrypt")]


@pytest.mark.parametrize(("count", "workers"), [(1, 4), (3, 4), (8, 2), (9, 2), (41, 4),
                                                 (41, 1), (100, 3)])
def test_spans_cover_every_chunk_once_in_order(count: int, workers: int) -> None:
    parts = spans(count, workers)
    assert [i for span in parts for i in span] == list(range(count))
    assert 1 <= len(parts) <= workers
    assert len(parts) == 1 or all(len(span) >= MIN_SPAN_CHUNKS for span in parts)


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 8])
def test_any_number_of_threads_decrypts_the_same_payload(plain_pack: Pack, kek: Kek,
                                                          workers: int) -> None:
    blob = seal(plain_pack.manifest, plain_pack.compressed, kek, chunk_size=CHUNK)
    sealed = SealedPack.from_bytes(blob)
    count = sealed.header.chunk_count
    assert len(spans(count, workers)) == min(workers, count // MIN_SPAN_CHUNKS)
    out = memoryview(bytearray(sealed.header.payload_size))
    sealed.decrypt_into(kek, out, workers)
    assert bytes(out) == plain_pack.compressed
    assert not _threads()


def test_a_sealed_file_on_disk_is_read_by_each_thread_from_its_own_span(
        plain_pack: Pack, kek: Kek, tmp_path: Path) -> None:
    path = tmp_path / "p.sealed"
    path.write_bytes(seal(plain_pack.manifest, plain_pack.compressed, kek, chunk_size=CHUNK))
    out = memoryview(bytearray(len(plain_pack.compressed)))
    SealedPack.open(path).decrypt_into(kek, out, workers=4)
    assert bytes(out) == plain_pack.compressed
    files = container.split_files(plain_pack.manifest, out)
    assert bytes(files["model.onnx"]) == GRAPH and bytes(files["weights.bin"]) == WEIGHTS


@pytest.mark.parametrize("chunk", [0, 20, -1])
def test_a_tampered_chunk_in_any_span_fails_and_the_payload_is_wiped(
        plain_pack: Pack, kek: Kek, chunk: int) -> None:
    blob = bytearray(seal(plain_pack.manifest, plain_pack.compressed, kek, chunk_size=CHUNK))
    header = fmt.decode_header(bytes(blob))
    count = header.chunk_count
    index = chunk % count
    blob[header.size + index * (CHUNK + aead.TAG_SIZE) + 3] ^= 1
    kept: list[memoryview] = []

    def alloc(n: int) -> memoryview:
        kept.append(memoryview(bytearray(n)))
        return kept[-1]

    with pytest.raises(TamperedError, match=f"chunk {index} of {count} does not authenticate"):
        open_payload(SealedPack.from_bytes(bytes(blob)), kek, alloc)
    assert kept and not any(kept[0])  # the verified chunks of the other spans too
    assert not _threads()

