"""Sealing and opening: round trips, edge sizes, and every way of tampering we refuse."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from llmos.errors import PackFormatError, TamperedError, WrongKeyError
from llmos.pack import container
from llmos.vault import aead
from llmos.vault import format as fmt
from llmos.vault.keys import Kek, generate_kek
from llmos.vault.sealed import SealedPack, open_payload, read_manifest, seal, seal_pack_file

from .packs import Pack, make_pack, random_pack

CHUNK = 256


def _chunk_span(blob: bytes | bytearray, i: int) -> slice:
    """Byte range of sealed chunk ``i`` (all but the last are CHUNK + tag long)."""
    start = fmt.decode_header(blob).size + i * (CHUNK + aead.TAG_SIZE)
    return slice(start, start + CHUNK + aead.TAG_SIZE)


def _files(sealed: SealedPack, kek: Kek) -> dict[str, bytes]:
    payload = open_payload(sealed, kek)
    return {k: bytes(v) for k, v in container.split_files(sealed.manifest, payload).items()}


def test_round_trip(pack: Pack, kek: Kek) -> None:
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK)
    sealed = SealedPack.from_bytes(blob)
    assert sealed.manifest == pack.manifest
    assert sealed.kek_id == kek.id
    assert sealed.header.chunk_count == -(-len(pack.compressed) // CHUNK) > 3
    assert b"".join(bytes(c) for c in sealed.chunks(kek)) == pack.compressed
    assert _files(sealed, kek) == pack.files


def test_ciphertext_shows_nothing_of_the_payload(pack: Pack, kek: Kek) -> None:
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK)
    body = blob[fmt.decode_header(blob).size:]
    windows = {pack.compressed[i:i + 16] for i in range(0, len(pack.compressed) - 16, 16)}
    assert not any(w in body for w in windows)
    assert kek.key not in blob and kek.key.hex().encode() not in blob


def test_each_seal_has_its_own_data_key_and_id(pack: Pack, kek: Kek) -> None:
    a = seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK)
    b = seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK)
    sa, sb = SealedPack.from_bytes(a), SealedPack.from_bytes(b)
    assert sa.pack_id != sb.pack_id
    assert sa.header.wrapped_key != sb.header.wrapped_key
    assert a[_chunk_span(a, 0)] != b[_chunk_span(b, 0)]
    assert _files(sa, kek) == _files(sb, kek) == pack.files


def test_file_round_trip_and_manifest_without_key(tmp_path: Path, pack: Pack, kek: Kek) -> None:
    plain, sealed_path = tmp_path / "m.pack", tmp_path / "m.sealed"
    container.write_pack(plain, pack.manifest, pack.compressed)
    assert seal_pack_file(plain, sealed_path, kek) == pack.manifest
    assert read_manifest(plain) == read_manifest(sealed_path) == pack.manifest
    opened = SealedPack.open(sealed_path)
    assert opened.kek_id == kek.id and str(sealed_path) == opened.origin
    assert _files(opened, kek) == pack.files
    with pytest.raises(PackFormatError, match="already sealed"):
        seal_pack_file(sealed_path, tmp_path / "again", kek)


def test_read_manifest_refuses_other_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(PackFormatError, match="bad magic"):
        read_manifest(junk)


def test_seal_refuses_a_manifest_that_does_not_match_the_payload(pack: Pack, kek: Kek) -> None:
    with pytest.raises(PackFormatError, match="compressed bytes"):
        seal(pack.manifest, pack.compressed[:-1], kek)


# ------------------------------------------------------------------------------ edge sizes

def test_empty_payload_is_one_authenticated_empty_chunk(pack: Pack, kek: Kek) -> None:
    manifest = replace(pack.manifest, size_packed=0)
    blob = seal(manifest, b"", kek, chunk_size=CHUNK)
    sealed = SealedPack.from_bytes(blob)
    assert sealed.header.chunk_count == 1
    assert len(blob) == sealed.header.size + aead.TAG_SIZE
    assert [bytes(c) for c in sealed.chunks(kek)] == [b""]
    with pytest.raises(TamperedError, match="truncated"):
        SealedPack.from_bytes(blob[:-aead.TAG_SIZE]).chunks(kek)
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(TamperedError, match="chunk 0 of 1"):
        list(SealedPack.from_bytes(flipped).chunks(kek))


def test_pack_of_one_empty_file_round_trips(kek: Kek) -> None:
    pack = make_pack({"model.onnx": b""})
    sealed = SealedPack.from_bytes(seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK))
    assert len(open_payload(sealed, kek)) == 0


@pytest.mark.parametrize("n_chunks", [1, 4])
def test_payload_of_exactly_n_chunks(kek: Kek, n_chunks: int) -> None:
    pack = next(p for p in (random_pack(1000 + k) for k in range(64))
                if len(p.compressed) % n_chunks == 0)
    chunk = len(pack.compressed) // n_chunks
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=chunk)
    sealed = SealedPack.from_bytes(blob)
    assert sealed.header.chunk_count == n_chunks
    assert [len(c) for c in sealed.chunks(kek)] == [chunk] * n_chunks
    assert _files(sealed, kek) == pack.files
    with pytest.raises(TamperedError, match="truncated"):
        SealedPack.from_bytes(blob[:-(chunk + aead.TAG_SIZE)]).chunks(kek)


# ------------------------------------------------------------------------------- tampering

def test_every_single_byte_flip_is_refused(kek: Kek) -> None:
    pack = random_pack(200)
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=64)
    header_size = fmt.decode_header(blob).size
    kek_id_field = range(40, 48)
    outcomes: dict[str, int] = {}
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        with pytest.raises((PackFormatError, WrongKeyError)) as caught:
            open_payload(SealedPack.from_bytes(bytes(bad)), kek)
        kind = type(caught.value).__name__
        outcomes[kind] = outcomes.get(kind, 0) + 1
        if pos >= header_size:
            assert kind == "TamperedError", pos  # every chunk byte is authenticated
        elif pos in kek_id_field:
            assert kind == "WrongKeyError", pos
        else:
            assert kind in ("TamperedError", "PackFormatError"), pos
    assert outcomes["TamperedError"] > len(blob) - header_size


@pytest.mark.parametrize("cut", ["boundary", "mid-chunk", "last-byte", "header"])
def test_truncation_is_refused(pack: Pack, kek: Kek, cut: str) -> None:
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK)
    ends = {"boundary": _chunk_span(blob, 2).stop, "mid-chunk": _chunk_span(blob, 2).stop - 100,
            "last-byte": len(blob) - 1, "header": fmt.FIXED_SIZE + 10}
    cut_blob = blob[:ends[cut]]
    if cut == "header":
        with pytest.raises(PackFormatError, match="truncated"):
            SealedPack.from_bytes(cut_blob)
        return
    with pytest.raises(TamperedError, match="truncated") as caught:
        SealedPack.from_bytes(cut_blob).chunks(kek)
    assert caught.value.hint


def test_truncated_file_on_disk_is_refused(tmp_path: Path, pack: Pack, kek: Kek) -> None:
    path = tmp_path / "m.sealed"
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK)
    path.write_bytes(blob[:_chunk_span(blob, 1).stop])
    with pytest.raises(TamperedError, match="truncated"):
        open_payload(SealedPack.open(path), kek)
    path.write_bytes(blob + b"\0")
    with pytest.raises(TamperedError, match="extended"):
        open_payload(SealedPack.open(path), kek)


def test_chunks_are_bound_to_their_final_flag(pack: Pack, kek: Kek) -> None:
    """Even without the length check, the last chunk cannot pose as a middle one."""
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK)
    sealed = SealedPack.from_bytes(blob)
    data_key = sealed._data_key(kek)
    digest = fmt.header_digest(sealed.header)
    last = sealed.header.chunk_count - 1
    tail = blob[sealed.header.size + last * (CHUNK + aead.TAG_SIZE):]
    assert aead.decrypt(data_key, fmt.chunk_nonce(last, True), tail,
                        fmt.chunk_aad(digest, last, True))
    with pytest.raises(aead.AuthenticationFailed):
        aead.decrypt(data_key, fmt.chunk_nonce(last, False), tail,
                     fmt.chunk_aad(digest, last, False))
    middle = blob[_chunk_span(blob, 1)]
    with pytest.raises(aead.AuthenticationFailed):
        aead.decrypt(data_key, fmt.chunk_nonce(1, True), middle, fmt.chunk_aad(digest, 1, True))


def test_reordered_chunks_are_refused(pack: Pack, kek: Kek) -> None:
    blob = bytearray(seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK))
    first, second = _chunk_span(blob, 0), _chunk_span(blob, 1)
    blob[first], blob[second] = blob[second], blob[first]
    with pytest.raises(TamperedError, match="chunk 0 of"):
        open_payload(SealedPack.from_bytes(bytes(blob)), kek)


def test_chunk_from_another_pack_with_the_same_key_is_refused(pack: Pack, kek: Kek) -> None:
    a = bytearray(seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK))
    b = seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK)
    a[_chunk_span(a, 1)] = b[_chunk_span(b, 1)]
    with pytest.raises(TamperedError, match=r"chunk 1 of .*another pack"):
        open_payload(SealedPack.from_bytes(bytes(a)), kek)


def test_header_of_one_pack_with_body_of_another_is_refused(kek: Kek) -> None:
    one, two = random_pack(3000, seed=1), random_pack(3000, seed=2)
    a = seal(one.manifest, one.compressed, kek, chunk_size=CHUNK)
    b = seal(two.manifest, two.compressed, kek, chunk_size=CHUNK)
    size_a, size_b = fmt.decode_header(a).size, fmt.decode_header(b).size
    mixed = a[:size_a] + b[size_b:size_b + len(a) - size_a]
    with pytest.raises(TamperedError, match="chunk 0 of"):
        open_payload(SealedPack.from_bytes(mixed), kek)


@pytest.mark.parametrize("new_name", [b"omega", b"a-much-longer-name"])
def test_edited_manifest_is_refused(pack: Pack, kek: Kek, new_name: bytes) -> None:
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=CHUNK)
    header = fmt.decode_header(blob)
    edited_manifest = header.manifest.replace(b'"name":"alpha"', b'"name":"' + new_name + b'"')
    edited = replace(header, manifest=edited_manifest).encode() + blob[header.size:]
    sealed = SealedPack.from_bytes(edited)
    assert sealed.manifest.name == new_name.decode()  # readable, but not trusted:
    with pytest.raises(TamperedError, match="header does not authenticate") as caught:
        sealed.chunks(kek)
    assert "copy the original" in caught.value.hint


def test_wrong_key_names_both_fingerprints(pack: Pack, kek: Kek) -> None:
    other = generate_kek()
    sealed = SealedPack.from_bytes(seal(pack.manifest, pack.compressed, kek))
    with pytest.raises(WrongKeyError) as caught:
        open_payload(sealed, other)
    assert kek.id in caught.value.message and other.id in caught.value.message
    assert kek.id in caught.value.hint


def test_a_refused_pack_leaves_no_plaintext_in_the_buffer(
        kek: Kek, monkeypatch: pytest.MonkeyPatch) -> None:
    pack = random_pack(600_000)  # several zstd blocks, so decompression starts early
    blob = bytearray(seal(pack.manifest, pack.compressed, kek, chunk_size=1 << 16))
    blob[-1] ^= 0x80  # the last chunk: much was decompressed before it is reached
    buffers: list[memoryview] = []
    seen: list[bool] = []

    def alloc(n: int) -> memoryview:
        buffers.append(memoryview(bytearray(n)))
        return buffers[-1]

    real_chunks = SealedPack.chunks

    def watched_chunks(self: SealedPack, key: Kek) -> Iterator[memoryview]:
        for chunk in real_chunks(self, key):
            seen.append(any(buffers[0]))  # plaintext already in the buffer?
            yield chunk

    monkeypatch.setattr(SealedPack, "chunks", watched_chunks)
    with pytest.raises(TamperedError):
        open_payload(SealedPack.from_bytes(bytes(blob)), kek, alloc)
    assert any(seen), "the test must fail a pack after some plaintext was written"
    assert len(buffers) == 1 and not any(buffers[0])
