"""Secure Boot state and the key's binding (llmos.vault.boot_trust): pure, no TPM."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmos.vault import boot_trust
from llmos.vault.boot_trust import Binding

VAR = f"SecureBoot-{boot_trust.EFI_GLOBAL_VARIABLE}"


@pytest.mark.parametrize(("content", "expected"), [
    (b"\x06\x00\x00\x00\x01", True), (b"\x06\x00\x00\x00\x00", False), (b"\x06", False)])
def test_secure_boot_reads_the_firmware_variable(tmp_path: Path, content: bytes,
                                                 expected: bool) -> None:
    (tmp_path / VAR).write_bytes(content)
    assert boot_trust.secure_boot(tmp_path) is expected


def test_secure_boot_without_the_variable_or_without_uefi(tmp_path: Path) -> None:
    assert boot_trust.secure_boot(tmp_path) is False  # UEFI, no variable: off
    assert boot_trust.secure_boot(tmp_path / "absent") is None  # no UEFI variables at all


def test_pcr_lists_parse_like_systemd_creds() -> None:
    assert boot_trust.pcr_set("7+11") == {7, 11}
    assert boot_trust.pcr_set("7,14") == {7, 14}
    assert boot_trust.pcr_set("") == frozenset()


def test_protected_only_with_secure_boot_pcr7_and_a_signed_pcr11_policy() -> None:
    assert Binding("7", "11", True).protected
    assert Binding("7", "11", True).problems() == []
    for binding, problem in [(Binding("7", "11", False), "Secure Boot is off"),
                             (Binding("7", "11", None), "Secure Boot state unknown"),
                             (Binding("14", "11", True), "PCR 7"),
                             (Binding("7", "", True), "signed PCR 11")]:
        assert not binding.protected
        assert any(problem in p for p in binding.problems()), binding.problems()
    described = Binding("7", "11", True).describe()
    assert described["policy_signed"] is True and described["secure_boot"] is True


def test_tcti_for_systemd_device_names() -> None:
    assert boot_trust.tcti("auto") == "device:/dev/tpmrm0"
    assert boot_trust.tcti("/dev/tpm0") == "device:/dev/tpm0"
    assert boot_trust.tcti("swtpm:path=/x") == "swtpm:path=/x"


def test_a_failed_measurement_is_an_error() -> None:
    with pytest.raises(boot_trust.MeasureError, match="not installed"):
        boot_trust.measure_release("auto", tool="/nonexistent/tpm2_pcrextend")
