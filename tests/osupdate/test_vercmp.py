"""Versions order as systemd's strverscmp_improved orders the ones LLM OS cuts."""

from __future__ import annotations

import pytest

from llmos.osupdate.vercmp import compare, newest


@pytest.mark.parametrize(("older", "newer"), [
    ("1", "2"), ("2", "10"), ("9", "10"), ("1.9", "1.10"), ("1.2", "1.2.1"),
    ("1.2.9", "1.10"), ("2~rc1", "2"), ("2~rc1", "2~rc2"), ("0.9", "1"), ("1.0", "1.0.1"),
    ("20261206.1", "20261206.2"), ("1a", "1b"),
])
def test_the_newer_version_compares_greater(older: str, newer: str) -> None:
    assert compare(older, newer) == -1
    assert compare(newer, older) == 1


@pytest.mark.parametrize(("a", "b"), [("1", "1"), ("1.10", "1.10"), ("01", "1"), ("", "")])
def test_equal_versions(a: str, b: str) -> None:
    assert compare(a, b) == 0


def test_newest_picks_by_number_not_by_text() -> None:
    assert newest(["9", "10", "2"]) == "10"
    assert newest(["1.9", "1.10", "1.2"]) == "1.10"
    assert newest([]) is None
