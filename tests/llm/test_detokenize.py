"""Incremental decoding: multi-byte characters split over tokens come out whole."""

from __future__ import annotations

from collections.abc import Sequence

from llmos.llm.detokenize import IncrementalDecoder

# A byte-level vocabulary: each token is some bytes; decoding replaces broken UTF-8.
VOCAB = {1: b"Caf", 2: b"\xc3", 3: b"\xa9", 4: b" au", 5: b" lait", 6: b"\xf0\x9f", 7: b"\x98\x80"}


def decode(ids: Sequence[int]) -> str:
    return b"".join(VOCAB[i] for i in ids).decode("utf-8", errors="replace")


def test_deltas_concatenate_to_the_full_text() -> None:
    d = IncrementalDecoder(decode)
    ids = [1, 2, 3, 4, 5, 6, 7]
    deltas = [d.push(i) for i in ids]
    assert "".join(deltas) == decode(ids) == "Café au lait😀"
    assert deltas[1] == ""  # half of "é" is held back
    assert deltas[2] == "é"
    assert "\ufffd" not in "".join(deltas)


def test_flush_returns_what_was_held() -> None:
    d = IncrementalDecoder(decode)
    d.push(1)
    assert d.push(2) == ""
    assert d.flush() == "\ufffd"
