"""Packs whose payload is stored uncompressed (manifest ``compression`` "none"): the packer
picks it where zstd does not pay; opening decrypts straight into the payload's buffer, and
every check of a compressed pack still holds."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from llmos.errors import PackFormatError, TamperedError, WrongKeyError
from llmos.pack import container
from llmos.pack.manifest import Manifest
from llmos.vault import format as fmt
from llmos.vault.keys import Kek, generate_kek
from llmos.vault.sealed import SealedPack, open_payload, seal

from .packs import make_pack, random_pack


def test_choose_compresses_only_what_shrinks_enough() -> None:
    text = b"the same words again and again " * 4000
    assert container.choose(text)[0] == "zstd"
    noise = os.urandom(len(text))
    assert container.choose(noise) == ("none", noise)
    assert container.choose(noise, max_ratio=1.1)[0] == "zstd"  # 1.1: always compress


def test_sealed_round_trip_decrypts_into_the_buffer(kek: Kek) -> None:
    pack = random_pack(5000, compression="none")
    sealed = SealedPack.from_bytes(seal(pack.manifest, pack.compressed, kek, chunk_size=256))
    assert sealed.manifest.compression == "none" and sealed.header.chunk_count > 10
    buffers: list[memoryview] = []

    def alloc(n: int) -> memoryview:
        buffers.append(memoryview(bytearray(n)))
        return buffers[-1]

    payload = open_payload(sealed, kek, alloc)
    assert len(buffers) == 1 and payload is buffers[0]  # no second buffer
    files = container.split_files(sealed.manifest, payload)
    assert {k: bytes(v) for k, v in files.items()} == pack.files


def test_every_single_byte_flip_is_refused_and_wiped(kek: Kek) -> None:
    pack = random_pack(200, compression="none")
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=64)
    header_size = fmt.decode_header(blob).size
    buffers: list[memoryview] = []

    def alloc(n: int) -> memoryview:
        buffers.append(memoryview(bytearray(n)))
        return buffers[-1]

    for pos in range(header_size, len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        buffers.clear()
        with pytest.raises(TamperedError):
            open_payload(SealedPack.from_bytes(bytes(bad)), kek, alloc)
        assert len(buffers) == 1 and not any(buffers[0]), pos  # no plaintext is left


def test_header_and_key_checks_come_first(kek: Kek) -> None:
    pack = random_pack(300, compression="none")
    blob = seal(pack.manifest, pack.compressed, kek, chunk_size=64)
    with pytest.raises(WrongKeyError):
        open_payload(SealedPack.from_bytes(blob), generate_kek())
    with pytest.raises(TamperedError, match="truncated"):
        open_payload(SealedPack.from_bytes(blob[:-1]), kek)


def test_plain_stored_pack_is_checked_against_its_sha256() -> None:
    pack = make_pack({"model.onnx": b"weights" * 100}, compression="none")
    payload = container.decompress_into([pack.compressed[:100], pack.compressed[100:]],
                                        pack.manifest)
    assert bytes(container.split_files(pack.manifest, payload)["model.onnx"]) == \
        pack.files["model.onnx"]
    bad = bytearray(pack.compressed)
    bad[7] ^= 1
    with pytest.raises(PackFormatError, match="sha256"):
        container.decompress_into([bytes(bad)], pack.manifest)
    with pytest.raises(PackFormatError, match="larger"):
        container.decompress_into([pack.compressed, b"x"], pack.manifest)
    with pytest.raises(PackFormatError, match="expected"):
        container.decompress_into([pack.compressed[:-1]], pack.manifest)


def test_manifest_compression_field() -> None:
    zstd = make_pack({"model.onnx": b"w" * 100}).manifest
    assert "compression" not in json.loads(zstd.to_json())  # earlier packs' manifests
    assert Manifest.from_json(zstd.to_json()).compression == "zstd"
    stored = make_pack({"model.onnx": b"w" * 100}, compression="none").manifest
    assert Manifest.from_json(stored.to_json()) == stored
    with pytest.raises(PackFormatError, match="unknown compression"):
        replace(stored, compression="lz4").validate()
    with pytest.raises(PackFormatError, match="sizes differ"):
        replace(stored, size_packed=stored.size_packed - 1).validate()
