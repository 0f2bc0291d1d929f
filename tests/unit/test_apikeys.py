"""The API key store: file format, hashing, constant-time lookup, sources."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from llmos import apikeys
from llmos.errors import ConfigError

KEY_A = "alpha-key-0123456789abcdef"
KEY_B = "bravo-key-0123456789abcdef"


def test_parse_clear_and_hashed_lines() -> None:
    text = (f"# comment\n\nbatch: {KEY_A}\n"
            f"lb: sha256:{hashlib.sha256(KEY_B.encode()).hexdigest()}\n")
    store = apikeys.merge([apikeys.parse(text, "t")])
    assert store.names() == ("batch", "lb")
    assert store.check(KEY_A) == "batch"
    assert store.check(KEY_B) == "lb"
    assert store.check(KEY_A + "x") is None
    assert store.check("") is None
    assert store.enabled
    assert not apikeys.KeyStore().enabled


def test_keys_are_kept_as_digests_only() -> None:
    store = apikeys.merge([apikeys.parse(f"a: {KEY_A}", "t")])
    assert KEY_A not in repr(store)
    assert store.keys[0].sha256 == hashlib.sha256(KEY_A.encode()).digest()


def test_every_digest_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the first key matching costs as many comparisons as none matching."""
    store = apikeys.merge([apikeys.parse(f"a: {KEY_A}\nb: {KEY_B}\nc: {KEY_B}c", "t")])
    calls: list[int] = []
    real = apikeys.hmac.compare_digest

    def counting(x: bytes, y: bytes) -> bool:
        calls.append(1)
        return real(x, y)

    monkeypatch.setattr(apikeys.hmac, "compare_digest", counting)
    assert store.check(KEY_A) == "a"
    first = len(calls)
    calls.clear()
    assert store.check("nothing-like-any-key") is None
    assert first == len(calls) == 3


@pytest.mark.parametrize("line", ["no separator here", "bad name!: " + KEY_A, "a: short",
                                  "a: has space inside key", ": " + KEY_A])
def test_bad_lines_are_refused_with_a_hint(line: str) -> None:
    with pytest.raises(ConfigError) as exc:
        apikeys.parse(line, "keys.txt")
    assert "keys.txt" in exc.value.message
    assert KEY_A not in exc.value.message  # a key never ends up in an error message
    assert exc.value.hint


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="unique"):
        apikeys.merge([apikeys.parse(f"a: {KEY_A}", "1"), apikeys.parse(f"a: {KEY_B}", "2")])


def test_load_merges_credential_and_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / apikeys.CREDENTIAL).write_text(f"appliance: {KEY_A}\n")
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"host: {KEY_B}\n")
    store = apikeys.load(keys_file, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert store.names() == ("appliance", "host")
    assert not apikeys.load(None, {}).enabled
    assert not apikeys.load(None, {"CREDENTIALS_DIRECTORY": str(tmp_path)}).enabled
    with pytest.raises(ConfigError, match="cannot read"):
        apikeys.load(tmp_path / "missing", {})


def test_generated_key_and_its_lines() -> None:
    key = apikeys.generate()
    assert len(key) >= apikeys.MIN_KEY_CHARS and key != apikeys.generate()
    for hashed in (False, True):
        line = apikeys.key_line("pool-1", key, hashed=hashed)
        assert (key in line) is not hashed
        store = apikeys.merge([apikeys.parse(line, "t")])
        assert store.check(key) == "pool-1"


def test_a_local_client_finds_a_key_in_clear(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    hashed = f"ops: sha256:{'ab' * 32}\n"
    (creds / apikeys.CREDENTIAL).write_text("# keys\n" + hashed)
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert apikeys.plain_key(None, {}) == (False, None)
    assert apikeys.plain_key(None, env) == (True, None)  # required, but only a digest
    keys_file = tmp_path / "keys"
    keys_file.write_text("gate: a-key-of-at-least-16-chars\n")
    assert apikeys.plain_key(keys_file, env) == (True, "a-key-of-at-least-16-chars")
