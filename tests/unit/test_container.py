from __future__ import annotations

import hashlib

import pytest

from llmos.errors import PackFormatError
from llmos.pack import container
from llmos.pack.manifest import Manifest, TensorSpec


def _pack(files: dict[str, bytes]) -> tuple[Manifest, bytes]:
    entries, payload = container.build_payload(files)
    compressed = container.compress(payload, level=3)
    m = Manifest(
        name="m", version="1", kind="tensor", runtime="onnx",
        inputs=(TensorSpec("x", "FP32", (-1, 4)),), outputs=(TensorSpec("y", "FP32", (-1, 4)),),
        files=entries, sha256=hashlib.sha256(payload).hexdigest(),
        size_plain=len(payload), size_packed=len(compressed),
    )
    return m, container.encode(m, compressed)


def test_round_trip_is_zero_copy_split() -> None:
    files = {"model.onnx": bytes(range(256)) * 5, "tokenizer.json": b'{"a": 1}', "z": b""}
    _, blob = _pack(files)
    m, compressed = container.decode(blob)
    payload = container.decompress_into([compressed], m)
    views = container.split_files(m, payload)
    assert {k: bytes(v) for k, v in views.items()} == files
    # every file starts on an aligned offset
    assert all(off % container.ALIGN == 0 for off, _ in container.layout(m.files).values())
    assert all(v.obj is payload.obj for v in views.values())


def test_decompress_from_many_small_chunks() -> None:
    files = {"model.onnx": b"abc" * 10000}
    m, blob = _pack(files)
    _, compressed = container.decode(blob)
    chunks = [compressed[i:i + 7] for i in range(0, len(compressed), 7)]
    payload = container.decompress_into(chunks, m)
    assert bytes(container.split_files(m, payload)["model.onnx"]) == files["model.onnx"]


def test_reproducible() -> None:
    files = {"model.onnx": b"w" * 1000, "b": b"x"}
    assert _pack(files)[1] == _pack(dict(reversed(files.items())))[1]


def test_bad_magic_and_truncation_are_named() -> None:
    _, blob = _pack({"model.onnx": b"q" * 5000})
    with pytest.raises(PackFormatError, match="bad magic"):
        container.decode(b"NOTAPACK" + blob[8:])
    with pytest.raises(PackFormatError, match="truncated"):
        container.decode(blob[:20])
    m, compressed = container.decode(blob)
    with pytest.raises(PackFormatError, match=r"truncated|decompress"):
        container.decompress_into([compressed[: len(compressed) // 2]], m)


def test_checksum_mismatch_is_refused() -> None:
    m, blob = _pack({"model.onnx": b"q" * 5000})
    _, compressed = container.decode(blob)
    wrong = Manifest(**{**m.__dict__, "sha256": "0" * 64})
    with pytest.raises(PackFormatError, match="sha256"):
        container.decompress_into([compressed], wrong)


def test_an_authenticated_payload_is_not_hashed_again_but_still_checksummed() -> None:
    """A sealed pack's bytes and manifest are authenticated by AES-GCM: no SHA-256 of the
    plaintext then, but zstd's own content checksum still catches a bad decompression."""
    m, blob = _pack({"model.onnx": bytes(range(256)) * 40})
    _, compressed = container.decode(blob)
    wrong = Manifest(**{**m.__dict__, "sha256": "0" * 64})
    payload = container.decompress_into([compressed], wrong, authenticated=True)
    assert bytes(payload[:256]) == bytes(range(256))
    garbled = bytearray(compressed)
    garbled[-2] ^= 0xFF  # the frame ends with its content checksum (4 bytes)
    with pytest.raises(PackFormatError, match="does not decompress"):
        container.decompress_into([bytes(garbled)], m, authenticated=True)


def test_more_data_than_the_manifest_and_a_corrupt_stream_are_refused() -> None:
    m, blob = _pack({"model.onnx": bytes(range(256)) * 40})
    _, compressed = container.decode(blob)
    _, other_blob = _pack({"model.onnx": b"p" * 4000})
    # A second frame behind the first: more plaintext than the manifest accounts for.
    with pytest.raises(PackFormatError, match="larger than its manifest"):
        container.decompress_into([compressed, container.decode(other_blob)[1]], m)
    garbled = bytearray(compressed)
    garbled[len(garbled) // 2:] = bytes(len(garbled) - len(garbled) // 2)
    with pytest.raises(PackFormatError, match=r"does not decompress|truncated|sha256"):
        container.decompress_into([bytes(garbled)], m)


def test_manifest_validation() -> None:
    m, _ = _pack({"model.onnx": b"x"})
    d = m.to_dict()
    assert Manifest.from_json(m.to_json()) == m
    with pytest.raises(PackFormatError, match="kind"):
        Manifest.from_dict({**d, "kind": "toaster"})
    with pytest.raises(PackFormatError, match="entrypoint"):
        Manifest.from_dict({**d, "entrypoint": "missing.onnx"})
    with pytest.raises(PackFormatError, match="malformed"):
        Manifest.from_dict({k: v for k, v in d.items() if k != "files"})
