"""Admin password: scrypt hashes, the hash file (0600, never the clear password), the
provisioning order, and ``llmos admin set-password``."""

from __future__ import annotations

import argparse
import io
import stat
from pathlib import Path

import pytest

from llmos.admin.password import (
    PasswordHash,
    ScryptParams,
    check_new_password,
    hash_password,
    verify_password,
)
from llmos.admin.password_file import (
    CREDENTIAL,
    Source,
    hash_path,
    provision,
    read_hash,
    set_password,
)
from llmos.commands import admin as admin_command
from llmos.errors import ConfigError

FAST = ScryptParams(log2_n=10, r=8, p=1)  # the format and checks, without the slowness


def test_hash_verifies_only_the_right_password() -> None:
    h = hash_password("correct horse", FAST)
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "correct horsf")
    assert not verify_password(h, "")


def test_same_password_gets_a_fresh_salt_each_time() -> None:
    a, b = hash_password("same password", FAST), hash_password("same password", FAST)
    assert a.salt != b.salt and a.key != b.key


def test_encoding_round_trips_and_names_its_parameters() -> None:
    h = hash_password("round trip!", FAST)
    text = h.encode()
    assert text.startswith("scrypt$ln=10,r=8,p=1$")
    back = PasswordHash.decode(text)
    assert back == h
    assert verify_password(back, "round trip!")


def test_default_parameters_are_slow_on_purpose() -> None:
    h = hash_password("default params")
    assert (h.params.log2_n, h.params.r, h.params.p) == (15, 8, 1)
    assert len(h.salt) == 16 and len(h.key) == 32


@pytest.mark.parametrize("text", ["", "md5$abc", "scrypt$ln=x,r=8,p=1$AAAA$AAAA",
                                  "scrypt$ln=15,r=8$AAAA$AAAA", "scrypt$ln=40,r=8,p=1$AAAA$AAAA"])
def test_malformed_hashes_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        PasswordHash.decode(text)
    assert "set-password" in info.value.hint


def test_new_passwords_must_be_long_enough() -> None:
    with pytest.raises(ConfigError):
        check_new_password("short")
    check_new_password("long enough")


def test_hash_file_is_private_and_holds_no_clear_password(tmp_path: Path) -> None:
    path = hash_path(tmp_path / "state")
    password = "s3cret-Passw0rd-xyz"
    set_password(path, password)
    raw = path.read_bytes()
    assert password.encode() not in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = read_hash(path)
    assert stored is not None and verify_password(stored, password)
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_a_loose_hash_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "admin-password"
    path.write_text(hash_password("password123", FAST).encode())
    path.chmod(0o644)
    assert read_hash(path) is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_provision_prefers_the_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "admin-password"
    set_password(path, "the existing one")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / CREDENTIAL).write_text("from the credential\n")
    out = provision(path, {"CREDENTIALS_DIRECTORY": str(creds)}, generate=True)
    assert out.source is Source.FILE and out.generated is None
    assert out.hash is not None and verify_password(out.hash, "the existing one")


def test_provision_from_the_systemd_credential(tmp_path: Path) -> None:
    path = tmp_path / "state" / "admin-password"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / CREDENTIAL).write_text("from the credential\n")
    out = provision(path, {"CREDENTIALS_DIRECTORY": str(creds)}, generate=True)
    assert out.source is Source.CREDENTIAL and out.generated is None
    stored = read_hash(path)
    assert stored is not None and verify_password(stored, "from the credential")
    assert b"from the credential" not in path.read_bytes()


def test_provision_generates_in_demo_mode_and_shows_it_once(tmp_path: Path) -> None:
    path = tmp_path / "admin-password"
    out = provision(path, {}, generate=True)
    assert out.source is Source.GENERATED and out.generated
    stored = read_hash(path)
    assert stored is not None and verify_password(stored, out.generated)
    assert out.generated.encode() not in path.read_bytes()
    again = provision(path, {}, generate=True)
    assert again.source is Source.FILE and again.generated is None


def test_provision_without_any_source_leaves_logins_impossible(tmp_path: Path) -> None:
    path = tmp_path / "admin-password"
    out = provision(path, {}, generate=False)
    assert out.source is Source.NONE and out.hash is None
    assert not path.exists()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmos")
    admin_command.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_set_password_command_reads_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a brand new password\n"))
    args = _parser().parse_args(["admin", "set-password", "--state-dir", str(tmp_path)])
    assert args.func(args) == 0
    stored = read_hash(hash_path(tmp_path))
    assert stored is not None and verify_password(stored, "a brand new password")
    assert "a brand new password" not in capsys.readouterr().out


def test_set_password_command_refuses_a_short_password(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    args = _parser().parse_args(["admin", "set-password", "--state-dir", str(tmp_path)])
    with pytest.raises(ConfigError):
        args.func(args)
    assert not hash_path(tmp_path).exists()
