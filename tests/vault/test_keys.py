"""Fleet keys, key files, and the keyfile and credential providers (no TPM needed)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from llmos import config
from llmos.errors import ConfigError, KeyReleaseError, LlmosError
from llmos.vault.credential import CredentialProvider
from llmos.vault.keyfile import KeyfileProvider, destroy_file
from llmos.vault.keys import Kek, generate_kek, provider_from_config, read_keyfile, write_keyfile
from llmos.vault.tpm2 import Tpm2Provider


def _load(tmp_path: Path, keys: str) -> config.Config:
    path = tmp_path / "llmos.toml"
    path.write_text("[keys]\n" + keys)
    return config.load(path, environ={})


def test_kek_fingerprint_is_stable_short_and_not_the_key() -> None:
    kek = generate_kek()
    assert kek.id == Kek(kek.key).id
    assert len(kek.id) == 16 and int(kek.id, 16) >= 0
    assert kek.id not in kek.key.hex()
    assert generate_kek().id != kek.id
    assert kek.key.hex() not in repr(kek) and kek.id in repr(kek)
    with pytest.raises(ValueError, match="32 bytes"):
        Kek(b"short")


def test_keyfile_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path, kek = tmp_path / "fleet.key", generate_kek()
    old_umask = os.umask(0)
    try:
        write_keyfile(path, kek)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_keyfile(path) == kek
    with pytest.raises(LlmosError, match="already exists"):
        write_keyfile(path, generate_kek())
    assert read_keyfile(path) == kek


def test_keyfile_formats_and_errors(tmp_path: Path) -> None:
    raw = tmp_path / "raw.key"
    raw.write_bytes(b"\n" * 32)  # 32 raw bytes, even whitespace ones, are a key
    assert read_keyfile(raw).key == b"\n" * 32
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    with pytest.raises(KeyReleaseError, match="does not hold a fleet key") as caught:
        read_keyfile(bad)
    assert "llmos keygen" in caught.value.hint
    with pytest.raises(KeyReleaseError, match="cannot read"):
        read_keyfile(tmp_path / "missing.key")


def test_keyfile_provider_is_refused_without_allow_dev_key(tmp_path: Path) -> None:
    key = tmp_path / "fleet.key"
    write_keyfile(key, generate_kek())
    with pytest.raises(ConfigError, match="development only") as caught:
        _load(tmp_path, f'provider = "keyfile"\nkeyfile = "{key}"\n')
    assert "--allow-dev-key" in caught.value.hint
    hand_made = config.Config(values={**config.load(environ={}).values,
                                      "keys.provider": "keyfile", "keys.keyfile": key})
    with pytest.raises(ConfigError):  # a Config that skipped finalize() does not slip through
        provider_from_config(hand_made)


def test_keyfile_provider_warns_on_every_release(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, kek = tmp_path / "fleet.key", generate_kek()
    write_keyfile(key, kek)
    provider = provider_from_config(
        _load(tmp_path, f'provider = "keyfile"\nkeyfile = "{key}"\nallow_dev_key = true\n'))
    assert isinstance(provider, KeyfileProvider) and provider.name == "keyfile"
    with caplog.at_level(logging.WARNING):
        assert provider.release() == kek
        assert provider.release() == kek
    warnings = [r for r in caplog.records if "DEVELOPMENT KEY" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    assert provider.describe()["protected"] is False


def test_credential_provider_reads_the_credentials_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kek = generate_kek()
    (tmp_path / "fleet").write_bytes(kek.key)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    provider = provider_from_config(_load(tmp_path, 'provider = "credential"\n'
                                                    'credential = "fleet"\n'))
    assert isinstance(provider, CredentialProvider)
    assert provider.release() == kek
    assert "fleet" in str(provider.describe())


def test_credential_provider_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyReleaseError, match="CREDENTIALS_DIRECTORY") as caught:
        CredentialProvider("fleet", environ={}).release()
    assert "LoadCredentialEncrypted" in caught.value.hint
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    with pytest.raises(KeyReleaseError, match="not readable"):
        CredentialProvider("fleet", environ=env).release()
    with pytest.raises(ConfigError, match="not a valid credential name"):
        CredentialProvider("../etc/shadow", environ=env).release()


def test_tpm2_provider_from_config_and_missing_blob(tmp_path: Path) -> None:
    blob = tmp_path / "fleet.tpm2"
    provider = provider_from_config(
        _load(tmp_path, f'tpm2_blob = "{blob}"\ntpm2_pcrs = "7+14"\n'
                        'tpm2_device = "swtpm:path=/nowhere"\n'))
    assert isinstance(provider, Tpm2Provider)
    described = provider.describe()
    assert {k: described[k] for k in ("provider", "blob", "device", "pcrs", "signed_pcrs",
                                      "credential", "policy_signed")} == {
        "provider": "tpm2", "blob": str(blob), "device": "swtpm:path=/nowhere",
        "pcrs": "7+14", "signed_pcrs": "", "credential": "llmos-fleet-key",
        "policy_signed": False}
    # No signed policy (and this host boots without Secure Boot): not protected, and why.
    assert described["protected"] is False and described["problems"]
    with pytest.raises(KeyReleaseError, match="no TPM-sealed fleet key") as caught:
        provider.release()
    assert "llmos enroll" in caught.value.hint


def test_destroy_file_removes_the_key(tmp_path: Path) -> None:
    key = tmp_path / "fleet.key"
    write_keyfile(key, generate_kek())
    destroy_file(key)
    assert not key.exists()
