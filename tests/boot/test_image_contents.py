"""What the built image holds, read from mkosi's package manifest and the UKI (no boot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stage_packs import hugepages_for, read_list, read_packs, select

from .conftest import DEMO, ROOT
from .uki import section

pytestmark = pytest.mark.boot


def _packages(image: Path) -> set[str]:
    manifest = json.loads(image.with_suffix(".manifest").read_text())
    return {p["name"] for p in manifest["packages"]}


def test_default_image_has_no_compiler_shell_server_or_torch(image: Path) -> None:
    packages = _packages(image)
    forbidden = {p for p in packages
                 if p.startswith(("gcc-1", "g++", "cpp-", "clang", "openssh-server", "dropbear",
                                  "binutils", "python3-torch"))
                 and not p.endswith("-base")}  # gcc-N-base: libgcc's common files only
    assert not forbidden, forbidden
    assert {"gcc", "cpp", "make", "openssh-server"}.isdisjoint(packages)
    assert {"systemd", "python3", "linux-image-cloud-amd64", "tpm2-tools"} <= packages


def test_kernel_command_line_has_console_and_hugepages_for_the_packs(image: Path) -> None:
    cmdline = section(image.with_suffix(".efi"), ".cmdline").rstrip(b"\0").decode().split()
    assert "console=ttyS0,115200" in cmdline
    packs = select(read_packs(DEMO), read_list(ROOT / "image" / "packs.list"))
    assert f"hugepages={hugepages_for(packs)}" in cmdline, cmdline
    # The root file system is found and verified by its dm-verity root hash (no root=).
    assert any(a.startswith("roothash=") for a in cmdline), cmdline
    assert "ro" in cmdline and not any(a.startswith("root=") for a in cmdline), cmdline


def test_uki_and_boot_loader_are_signed_for_secure_boot(image: Path) -> None:
    import subprocess

    cert = ROOT / "build" / "keys" / "secureboot" / "db.crt"
    uki = image.with_suffix(".efi")
    done = subprocess.run(["sbverify", "--cert", str(cert), str(uki)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    # The expected PCR 11 values, signed, and the key to check them with, inside the UKI.
    signature = section(uki, ".pcrsig")
    assert b'"pcrs":[11]' in signature.replace(b" ", b""), signature[:200]
    assert section(uki, ".pcrpkey").startswith(b"-----BEGIN PUBLIC KEY-----")
