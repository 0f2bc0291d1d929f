"""``llmos keygen`` and ``llmos seal`` through the real command line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from llmos.cli import main
from llmos.pack import container
from llmos.vault.keys import read_keyfile
from llmos.vault.sealed import SealedPack, open_payload

from .packs import Pack


def test_keygen_writes_a_private_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    key = tmp_path / "fleet.key"
    assert main(["keygen", "--out", str(key)]) == 0
    kek = read_keyfile(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert kek.id in capsys.readouterr().out
    assert main(["keygen", "--out", str(key)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert read_keyfile(key) == kek


def test_seal_command(tmp_path: Path, pack: Pack, capsys: pytest.CaptureFixture[str]) -> None:
    key, plain = tmp_path / "fleet.key", tmp_path / "alpha.pack"
    container.write_pack(plain, pack.manifest, pack.compressed)
    assert main(["keygen", "--out", str(key)]) == 0
    kek = read_keyfile(key)
    assert main(["seal", str(plain), "--key", str(key)]) == 0
    out = capsys.readouterr().out
    sealed = SealedPack.open(tmp_path / "alpha.pack.sealed")
    assert kek.id in out and sealed.pack_id in out
    payload = open_payload(sealed, kek)
    assert {k: bytes(v) for k, v in container.split_files(sealed.manifest, payload).items()} \
        == pack.files
    assert main(["seal", str(plain), "--key", str(key), "--out", str(tmp_path / "b")]) == 0
    assert SealedPack.open(tmp_path / "b").pack_id != sealed.pack_id


def test_seal_command_errors(tmp_path: Path, pack: Pack, capsys: pytest.CaptureFixture[str]
                             ) -> None:
    plain = tmp_path / "alpha.pack"
    container.write_pack(plain, pack.manifest, pack.compressed)
    assert main(["seal", str(plain), "--key", str(tmp_path / "none.key")]) == 2
    err = capsys.readouterr().err
    assert "cannot read fleet key file" in err and "hint:" in err
    assert not (tmp_path / "alpha.pack.sealed").exists()
