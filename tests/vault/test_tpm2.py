"""The tpm2 provider and ``llmos enroll`` against real software TPMs (swtpm + systemd-creds)."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from llmos import config
from llmos.cli import main
from llmos.errors import KeyReleaseError
from llmos.pack import container
from llmos.vault.keys import Kek, generate_kek, provider_from_config, write_keyfile
from llmos.vault.sealed import SealedPack, open_payload, seal
from llmos.vault.tpm2 import Tpm2Provider

from .packs import Pack
from .swtpm import Swtpm

pytestmark = pytest.mark.tpm


def _provider(tmp_path: Path, tpm: Swtpm, pcrs: str = "7") -> Tpm2Provider:
    """The provider the service would build from its configuration."""
    provider = provider_from_config(config.load(environ={}, overrides={
        "keys.tpm2_blob": tmp_path / "fleet.tpm2", "keys.tpm2_device": tpm.device,
        "keys.tpm2_pcrs": pcrs}))
    assert isinstance(provider, Tpm2Provider)
    return provider


def _enroll(tmp_path: Path, tpm: Swtpm, *source: str, pcrs: str = "7") -> int:
    return main(["enroll", *source, "--allow-insecure-boot", "--blob", str(tmp_path / "fleet.tpm2"),
                 "--tpm2-device", tpm.device, "--pcrs", pcrs])


def test_enroll_then_release(tmp_path: Path, swtpm: Swtpm, kek: Kek) -> None:
    provider = _provider(tmp_path, swtpm)
    provider.enroll(kek)
    blob = tmp_path / "fleet.tpm2"
    assert stat.S_IMODE(blob.stat().st_mode) == 0o600
    assert kek.key.hex().encode() not in blob.read_bytes()
    assert provider.release() == kek
    assert provider.release() == kek


def test_release_fails_once_a_bound_pcr_changes(tmp_path: Path, swtpm: Swtpm, kek: Kek) -> None:
    provider = _provider(tmp_path, swtpm, pcrs="7+23")
    provider.enroll(kek)
    assert provider.release() == kek
    swtpm.pcrextend(23, b"something else booted")
    with pytest.raises(KeyReleaseError, match=r"systemd-creds said: .+") as caught:
        provider.release()
    assert "re-enroll" in caught.value.hint
    assert kek.key.hex() not in str(caught.value)


def test_another_tpm_cannot_release(tmp_path: Path, new_swtpm: Callable[[], Swtpm],
                                    kek: Kek) -> None:
    first, second = new_swtpm(), new_swtpm()
    enrolled = _provider(tmp_path, first)
    enrolled.enroll(kek)
    with pytest.raises(KeyReleaseError, match="refused to release"):
        _provider(tmp_path, second).release()
    assert enrolled.release() == kek


def test_enroll_command_is_idempotent_and_destroys_its_source(
        tmp_path: Path, swtpm: Swtpm, pack: Pack, capsys: pytest.CaptureFixture[str]) -> None:
    key, kek = tmp_path / "fleet.key", generate_kek()
    write_keyfile(key, kek)
    sealed = SealedPack.from_bytes(seal(pack.manifest, pack.compressed, kek))
    assert _enroll(tmp_path, swtpm, "--key-file", str(key)) == 0
    assert "enrolled" in capsys.readouterr().out
    blob = (tmp_path / "fleet.tpm2").read_bytes()
    assert _enroll(tmp_path, swtpm, "--key-file", str(key), "--destroy-source") == 0
    out = capsys.readouterr().out
    assert "unchanged" in out and "removed" in out
    assert (tmp_path / "fleet.tpm2").read_bytes() == blob
    assert not key.exists()
    # the service side: the TPM releases the key, the key opens the pack
    released = _provider(tmp_path, swtpm).release()
    payload = open_payload(sealed, released)
    assert {k: bytes(v) for k, v in container.split_files(sealed.manifest, payload).items()} \
        == pack.files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.tpm2"]  # no staging left


def test_enroll_refuses_to_rekey_silently(tmp_path: Path, swtpm: Swtpm,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "first.key", tmp_path / "second.key"
    write_keyfile(first, generate_kek())
    write_keyfile(second, generate_kek())
    assert _enroll(tmp_path, swtpm, "--key-file", str(first)) == 0
    blob = (tmp_path / "fleet.tpm2").read_bytes()
    assert _enroll(tmp_path, swtpm, "--key-file", str(second)) == 2
    assert "already holds fleet key" in capsys.readouterr().err
    assert (tmp_path / "fleet.tpm2").read_bytes() == blob


def test_enroll_again_after_pcr_change_from_a_credential(
        tmp_path: Path, swtpm: Swtpm, kek: Kek, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "provision").write_bytes(kek.key.hex().encode())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert _enroll(tmp_path, swtpm, "--credential", "provision", pcrs="7+23") == 0
    swtpm.pcrextend(23, b"an update")
    provider = _provider(tmp_path, swtpm, pcrs="7+23")
    with pytest.raises(KeyReleaseError):
        provider.release()
    capsys.readouterr()
    assert _enroll(tmp_path, swtpm, "--credential", "provision", pcrs="7+23") == 0
    assert "re-enrolled" in capsys.readouterr().out
    assert provider.release() == kek
    assert _enroll(tmp_path, swtpm, "--credential", "provision", "--destroy-source") == 2


def test_blob_is_bound_to_its_credential_name(tmp_path: Path, swtpm: Swtpm, kek: Kek) -> None:
    blob = tmp_path / "fleet.tpm2"
    Tpm2Provider(blob, device=swtpm.device, credential="fleet-a").enroll(kek)
    with pytest.raises(KeyReleaseError, match="systemd-creds said"):
        Tpm2Provider(blob, device=swtpm.device, credential="fleet-b").release()
    assert Tpm2Provider(blob, device=swtpm.device, credential="fleet-a").release() == kek
