"""The signed PCR 11 policy against a real software TPM (swtpm, systemd-creds, systemd-measure).

What a booted appliance does, on the host: PCR 11 holds some value (in a boot: the UKI's
measurement), the fleet key is sealed to PCR 7 plus "PCR 11 holds a value signed by the
fleet's PCR key", and the signature of the current value is handed to the release. An
update is another PCR 11 value with another signature by the same key; a foreign image is a
value signed by another key. Once released, the supervisor extends PCR 11 (the door closes
for the rest of the boot).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from llmos.cli import main
from llmos.errors import KeyReleaseError
from llmos.vault.enrollment import enroll
from llmos.vault.keys import Kek, write_keyfile
from llmos.vault.tpm2 import Tpm2Provider

from .swtpm import Swtpm

pytestmark = pytest.mark.tpm

MEASURE = Path("/usr/lib/systemd/systemd-measure")


def _keypair(directory: Path, name: str) -> tuple[Path, Path]:
    key, pub = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(["openssl", "genpkey", "-quiet", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    return key, pub


PHASE = "enter-initrd"


def _boot(tpm: Swtpm, kernel: bytes) -> None:
    """PCR 11 as systemd-stub and systemd-pcrphase leave it for a UKI whose only section is
    ``kernel``: the section's name (with its NUL), its content, then the boot phase."""
    for data in (b".linux\0", kernel, PHASE.encode()):
        tpm.pcrextend(11, data)


def _sign(kernel: bytes, key: Path, pub: Path, out: Path) -> Path:
    """The image build's signature of the PCR 11 value that UKI leads to."""
    linux = out.with_suffix(".linux")
    linux.write_bytes(kernel)
    done = subprocess.run([str(MEASURE), "sign", f"--linux={linux}", f"--phase={PHASE}",
                           "--bank=sha256", f"--private-key={key}", f"--public-key={pub}",
                           "--json=short"], capture_output=True, text=True, check=True)
    out.write_text(done.stdout)
    return out


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    if not MEASURE.exists() or shutil.which("openssl") is None:
        pytest.skip("systemd-measure or openssl not installed")
    return {"fleet": _keypair(tmp_path, "fleet"), "other": _keypair(tmp_path, "other")}


def _provider(tmp_path: Path, tpm: Swtpm, pub: Path, signature: Path,
              measure: bool) -> Tpm2Provider:
    return Tpm2Provider(blob=tmp_path / "fleet.tpm2", device=tpm.device, pcrs="7",
                        signed_pcrs="11", public_key=pub, signature=signature,
                        measure_release=measure)


def test_signed_image_releases_once_per_boot_and_foreign_signer_never(
        tmp_path: Path, keys: dict[str, tuple[Path, Path]], kek: Kek,
        new_swtpm: Callable[[], Swtpm]) -> None:
    tpm = new_swtpm()
    fleet_key, fleet_pub = keys["fleet"]
    _boot(tpm, b"image 1")
    sig1 = _sign(b"image 1", fleet_key, fleet_pub, tmp_path / "sig1.json")
    enroll(_provider(tmp_path, tpm, fleet_pub, sig1, measure=False), kek)
    blob = (tmp_path / "fleet.tpm2").read_bytes()
    assert kek.key not in blob and kek.key.hex().encode() not in blob

    # Another image signed by another key: its signature does not satisfy the policy.
    other_key, other_pub = keys["other"]
    foreign = _sign(b"image 1", other_key, other_pub, tmp_path / "foreign.json")
    with pytest.raises(KeyReleaseError, match="refused"):
        _provider(tmp_path, tpm, fleet_pub, foreign, measure=True).release()

    # The supervisor's release: once; then PCR 11 moved on and nothing releases again.
    supervisor = _provider(tmp_path, tpm, fleet_pub, sig1, measure=True)
    assert supervisor.release() == kek
    with pytest.raises(KeyReleaseError, match="refused"):
        supervisor.release()


def test_an_update_signed_by_the_same_key_releases_without_reenrollment(
        tmp_path: Path, keys: dict[str, tuple[Path, Path]], kek: Kek,
        new_swtpm: Callable[[], Swtpm]) -> None:
    fleet_key, fleet_pub = keys["fleet"]
    state = tmp_path / "tpm"
    tpm = Swtpm(state_dir=state).start()
    try:
        _boot(tpm, b"image 1")
        sig1 = _sign(b"image 1", fleet_key, fleet_pub, tmp_path / "sig1.json")
        enroll(_provider(tmp_path, tpm, fleet_pub, sig1, measure=False), kek)
    finally:
        tpm.stop()  # power off (TPM2_Shutdown); the next start resets the PCRs
    tpm = Swtpm(state_dir=state).start()
    try:
        _boot(tpm, b"image 2")  # the update: another UKI, another PCR 11 value
        with pytest.raises(KeyReleaseError):  # the old image's signature no longer matches
            _provider(tmp_path, tpm, fleet_pub, sig1, measure=False).release()
        sig2 = _sign(b"image 2", fleet_key, fleet_pub, tmp_path / "sig2.json")
        assert _provider(tmp_path, tpm, fleet_pub, sig2, measure=True).release() == kek
    finally:
        tpm.stop()


def test_enroll_refuses_a_machine_without_secure_boot_unless_told(
        tmp_path: Path, swtpm: Swtpm, kek: Kek, capsys: pytest.CaptureFixture[str]) -> None:
    # This host is no Secure Boot machine (a container or VM without enforced Secure Boot).
    key = tmp_path / "fleet.key"
    write_keyfile(key, kek)
    argv = ["enroll", "--key-file", str(key), "--blob", str(tmp_path / "fleet.tpm2"),
            "--tpm2-device", swtpm.device, "--pcrs", "7"]
    assert main(argv) == 2
    assert "Secure Boot is off" in capsys.readouterr().err
    assert not (tmp_path / "fleet.tpm2").exists()
    assert main([*argv, "--allow-insecure-boot"]) == 0
    assert "WARNING" in capsys.readouterr().out
